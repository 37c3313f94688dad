package volmaster

import (
	"bufio"
	"io"
	"runtime"
)

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func runtimeGosched() { runtime.Gosched() }
