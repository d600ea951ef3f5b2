// Command kube_reply_decode times what kube-scheduler does with an extender's filter reply
// before it reads it: encoding/json decoding the body into extenderv1.ExtenderFilterResult
// (pkg/scheduler/extender.go, HTTPExtender.send), then setting one node status per entry of
// the failed maps (schedule_one.go, findNodesThatPassExtenders; a map insert here). It compares
// a rejection of every node listed node by node with the same rejection as one entry
// (extender/rejection.py), for --nodes node names like the presets' ("h100-00000").
//
//	go run . --nodes 10000 --repeats 200
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

const reason = "gang bench/g1 [waiting_for_members]: 1/4 members present"

func body(nodes int, listed bool) []byte {
	failed := map[string]string{"Phalanx: every offered node": reason}
	if listed {
		failed = make(map[string]string, nodes)
		for i := 0; i < nodes; i++ {
			failed[fmt.Sprintf("h100-%05d", i)] = reason
		}
	}
	out, err := json.Marshal(extenderv1.ExtenderFilterResult{NodeNames: &[]string{}, FailedNodes: failed})
	if err != nil {
		panic(err)
	}
	return out
}

func medianDecode(raw []byte, repeats int) time.Duration {
	times := make([]time.Duration, repeats)
	for r := range times {
		start := time.Now()
		var result extenderv1.ExtenderFilterResult
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&result); err != nil {
			panic(err)
		}
		statuses := make(map[string]string, len(result.FailedNodes))
		for name, msg := range result.FailedNodes {
			statuses[name] = msg
		}
		times[r] = time.Since(start)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[repeats/2]
}

func main() {
	nodes := flag.Int("nodes", 10000, "offered nodes")
	repeats := flag.Int("repeats", 200, "decodes timed per body (median reported)")
	flag.Parse()
	listed, one := body(*nodes, true), body(*nodes, false)
	medianDecode(listed, 5)
	fmt.Fprintf(os.Stdout, "| reply | bytes | decode + statuses, median |\n|---|---|---|\n")
	fmt.Printf("| listed node by node | %d | %.3f ms |\n", len(listed), float64(medianDecode(listed, *repeats).Microseconds())/1000)
	fmt.Printf("| one entry | %d | %.3f ms |\n", len(one), float64(medianDecode(one, *repeats).Microseconds())/1000)
}
