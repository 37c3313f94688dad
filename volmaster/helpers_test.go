package volmaster

import (
	"bufio"
	"io"
	"runtime"
	"syscall"
)

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func runtimeGosched() { runtime.Gosched() }

func umask(m int) int { return syscall.Umask(m) }
