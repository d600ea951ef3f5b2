// Command etcd is the etcd server at the version kube-apiserver pins, built from
// go.etcd.io/etcd/server/v3 so that tests need nothing outside the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
