package volplugin

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// markTimeout bounds telling volmaster that a volume is formatted: the
// mount is done, and Docker should not wait long for a volmaster that does
// not answer.
const markTimeout = 5 * time.Second

// markFormatted records in volmaster that v, just mounted (so its
// filesystem is there, made or found), is formatted, unless its record says
// so already; from then on a mount that finds no filesystem on it refuses it
// instead of formatting it. A failure is logged, not returned: the
// filesystem is recognised now, and the next mount marks it.
func (d *Driver) markFormatted(ctx context.Context, v *config.Volume, sv storage.Volume, log logrus.FieldLogger) {
	if v.Formatted() || len(sv.Mkfs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	got, err := d.cfg.API.MarkFormatted(ctx, *v, d.cfg.Host)
	if err != nil {
		log.WithError(err).Warn("could not record that the volume is formatted; its next mount will")
		return
	}
	v.FormattedAt = got.FormattedAt
	log.Info("volume marked formatted")
}
