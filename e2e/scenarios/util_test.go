package scenarios

import "github.com/clustermesh/clustermesh/e2e/workload"

func workloadReq(addr string) workload.DialRequest {
	return workload.DialRequest{Addr: addr, Message: "hello", TimeoutMS: 1000}
}
