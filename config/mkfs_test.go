package config

import (
	"errors"
	"strings"
	"testing"
)

// The exploit and its kin are refused naming the offending word;
// Contiv's own commands and the built-ins pass.
func TestCheckFSCommand(t *testing.T) {
	for _, ok := range []FSCommand{
		{"mkfs.ext4", "-m0", "%"}, {"mkfs.ext4", "-m", "0", "-L", "data", "-O", "^has_journal,metadata_csum", "%"},
		{"/sbin/mkfs.ext4", "-F", "-q", "%"}, {"mkfs.xfs", "%"}, {"mkfs.xfs", "-f", "-m", "crc=1,reflink=1", "%"},
		{"mkfs.btrfs", "%"}, {"/usr/sbin/mkfs.btrfs", "-f", "-L", "x", "%"}, {"/bin/false"}, {"false"},
	} {
		if err := CheckFSCommand(ok); err != nil {
			t.Errorf("CheckFSCommand(%q) = %v, want accepted", ok, err)
		}
	}
	for _, c := range []struct {
		cmd  FSCommand
		word string
	}{
		{FSCommand{"sh", "-c", `id > pwned; exec mkfs.ext4 "$0"`, "%"}, `"sh"`},
		{FSCommand{"/tmp/mkfs.ext4", "%"}, "/tmp/mkfs.ext4"},
		{FSCommand{"/sbin/../tmp/mkfs.ext4", "%"}, "/sbin/../tmp/mkfs.ext4"},
		{FSCommand{"mkfs.ext4", "%", "%"}, "exactly once"},
		{FSCommand{"mkfs.ext4"}, "exactly once"},
		{FSCommand{"mkfs.ext4", "-d", "/etc", "%"}, "-d"},
		{FSCommand{"mkfs.ext4", "-E", "root_owner=0:0;x", "%"}, "root_owner=0:0;x"},
		{FSCommand{"mkfs.ext4", "-L", "$(id)", "%"}, "$(id)"},
		{FSCommand{"mkfs.xfs", "-p", "/etc/protofile", "%"}, "-p"},
		{FSCommand{"mkfs.ext4", "/dev/sda", "%"}, "/dev/sda"},
		{FSCommand{"mkfs.ext4", "-m"}, "no value"},
		{FSCommand{"false", "%"}, "takes no arguments"},
		{FSCommand{""}, "empty"},
		{FSCommand{}, "empty"},
	} {
		err := CheckFSCommand(c.cmd)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.word) {
			t.Errorf("CheckFSCommand(%q) = %v, want ErrInvalid naming %s", c.cmd, err, c.word)
		}
	}
	// At upload, naming the filesystem and the word.
	_, err := DecodePolicy("p", []byte(`{"backend":"local","create":{"size":"10MB","filesystem":"own"},"filesystems":{"own":["sh","-c","id > pwned; exec mkfs.ext4 \"$0\"","%"]}}`))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "filesystem own") || !strings.Contains(err.Error(), `"sh"`) {
		t.Errorf("upload of the exploit = %v", err)
	}
}
