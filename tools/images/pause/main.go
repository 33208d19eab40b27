// Command pause is the sandbox container of kstrata's local test node: it
// holds a Pod's namespaces open, reaps the zombies re-parented to it (it is
// PID 1 of the Pod when the process namespace is shared) and exits 0 on
// SIGTERM or SIGINT.  Static and dependency-free, so that the image needs no
// registry: tools/images/images.py builds it and wraps it in an image itself.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		// One SIGCHLD can stand for several exited children: reap them all.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
