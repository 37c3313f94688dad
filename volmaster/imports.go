package volmaster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// The import routes take records converted from another installation
// (volcli migrate from-contiv, internal/migrate), one at a time, and write
// them through config/store like every other record: volmaster stays the
// one writer, and each record goes in its own transactions, create-if-absent
// (see store.ImportPolicy, ImportVolume, ImportGlobal). ?dry-run=true only
// reads and answers what would be done.

// importedBy names who took an adopted snapshot, in its record.
const importedBy = "the original volplugin (imported)"

func dryRun(r *http.Request) (bool, error) {
	s := r.URL.Query().Get("dry-run")
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("dry-run=%q is not true or false: %w", s, config.ErrInvalid)
	}
	return b, nil
}

func (s *Server) importGlobal(w http.ResponseWriter, r *http.Request) error {
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	g, err := config.DecodeGlobal(body)
	if err != nil {
		return err
	}
	action, cur, rev, err := s.store.ImportGlobal(r.Context(), g, dry)
	if err != nil {
		return err
	}
	res := config.ImportResult{Action: action}
	if action == config.ImportKept {
		res.Notes = append(res.Notes, fmt.Sprintf("a global config is stored here already (TTL %ds, Timeout %dm, Debug %v, MountPath %s): it stays; "+
			"volcli global upload replaces it", cur.TTL, cur.Timeout, cur.Debug, cur.MountPath))
	}
	if rev > 0 {
		s.log.WithField("action", action).Info("global config imported")
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) importPolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	var in config.PolicyImport
	if err := decodeBody(w, r, &in); err != nil {
		return fmt.Errorf("policy import: %w", err)
	}
	action, rev, err := s.store.ImportPolicy(r.Context(), name, in, dry)
	if err != nil {
		return err
	}
	if rev > 0 {
		s.settle(r.Context(), rev)
		s.log.WithField("policy", name).WithField("revisions", len(in.Revisions)).Info("policy imported")
	}
	writeJSON(w, http.StatusOK, config.ImportResult{Action: action})
	return nil
}

func (s *Server) importVolume(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	var in config.VolumeImport
	if err := decodeBody(w, r, &in); err != nil {
		return fmt.Errorf("volume import: %w", err)
	}
	v := in.Volume
	if v.Ref() != ref {
		return fmt.Errorf("the body names volume %s, the path %s: %w", v.Ref(), ref, config.ErrInvalid)
	}
	if err := v.CheckImported(); err != nil {
		return err
	}
	snaps, notes, err := s.backendSnapshots(r.Context(), &v)
	if err != nil {
		return err
	}
	action, adopted, rev, err := s.store.ImportVolume(r.Context(), v, snaps, dry)
	if err != nil {
		return err
	}
	if rev > 0 {
		s.settle(r.Context(), rev)
		s.log.WithField("volume", ref.String()).WithField("image", v.Image).WithField("snapshots", len(adopted)).Info("volume imported")
	}
	writeJSON(w, http.StatusOK, config.ImportResult{Action: action, Snapshots: adopted, Notes: notes})
	return nil
}

// backendSnapshots lists the snapshots the backend holds of an adopted
// image, as records to write: named by the time in the original's names
// (its time.String()), or by the import's time for a name that holds none.
// A backend this volmaster does not have, or an image it does not find, is
// a note, not an error: the record can be imported, and an import run again
// later adopts the snapshots.
func (s *Server) backendSnapshots(ctx context.Context, v *config.Volume) ([]config.Snapshot, []string, error) {
	if v.Image == "" || v.Backends.Snapshot == "" {
		return nil, nil, nil
	}
	b, ok := s.ops.Backends[v.Backends.Snapshot]
	if !ok {
		return nil, []string{fmt.Sprintf("snapshots not adopted: the %s backend is not configured on this volmaster; import again once it is", v.Backends.Snapshot)}, nil
	}
	sv, err := storage.FromConfig(v)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	err = s.volOps().Call(ctx, v.Backends.Snapshot, "list-snapshots", func(bctx context.Context) (err error) {
		names, err = b.ListSnapshots(bctx, sv)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, []string{fmt.Sprintf("image %s/%s not found: the record is imported, but the volume cannot be mounted until the image is there", v.Driver.Pool, v.Image)}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list the snapshots of %s/%s: %w", v.Driver.Pool, v.Image, err)
	}
	now := s.now().UTC()
	var out []config.Snapshot
	var notes []string
	for _, n := range names {
		if config.ValidateBackendSnapshotName(n) != nil {
			notes = append(notes, fmt.Sprintf("snapshot %q not adopted: its name cannot be handled here", n))
			continue
		}
		t, err := config.ParseOriginalSnapshotName(n)
		if err != nil {
			if t, err = config.ParseSnapshotName(n); err != nil {
				t = now
				notes = append(notes, fmt.Sprintf("snapshot %q holds no time: listed as taken at the import", n))
			}
		}
		sn := config.Snapshot{Name: config.SnapshotName(t), Time: t, By: importedBy, Method: storage.SnapshotNative}
		if sn.Name != n {
			sn.Backend = n
		}
		out = append(out, sn)
	}
	return out, notes, nil
}
