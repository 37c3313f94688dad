package volmaster

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
)

// hostPath matches an absolute path of two or more parts: a data directory,
// an image file, a mount point, a device.
var hostPath = regexp.MustCompile(`/[A-Za-z0-9._@+-]+(/[A-Za-z0-9._@+-]+)+/?`)

// scrubPaths replaces the host's filesystem paths in an error message with
// "[path]", keeping API paths (/v1/...) that name what was asked.
func scrubPaths(msg string) string {
	return hostPath.ReplaceAllStringFunc(msg, func(p string) string {
		if strings.HasPrefix(p, "/v1/") {
			return p
		}
		return "[path]"
	})
}

// scrubWriter holds back an error answer and sends it with the host's paths
// taken out of its message: volmaster's layout on disk (data directory,
// images, mount root) is for operators, not for every tenant. The request
// ID in the answer's header still finds the whole message in the log.
type scrubWriter struct {
	http.ResponseWriter
	log     *logrus.Logger
	request any // the request ID
	status  int
	body    bytes.Buffer
}

func (s *scrubWriter) WriteHeader(code int) {
	if s.status != 0 {
		return
	}
	s.status = code
	if code < 400 {
		s.ResponseWriter.WriteHeader(code)
	}
}

func (s *scrubWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.status < 400 {
		return s.ResponseWriter.Write(b)
	}
	return s.body.Write(b)
}

// flush sends a held-back error answer, scrubbed.
func (s *scrubWriter) flush() {
	if s.status < 400 {
		return
	}
	out := s.body.Bytes()
	var eb config.ErrorBody
	if json.Unmarshal(out, &eb) == nil && eb.Error != "" {
		if clean := scrubPaths(eb.Error); clean != eb.Error {
			s.log.WithFields(logrus.Fields{"request": s.request, "error": eb.Error}).Info("error answered without its host paths")
			eb.Error = clean
			if b, err := json.Marshal(eb); err == nil {
				out = append(b, '\n')
			}
		}
	}
	s.ResponseWriter.Header().Set("Content-Length", strconv.Itoa(len(out)))
	s.ResponseWriter.WriteHeader(s.status)
	_, _ = s.ResponseWriter.Write(out)
}
