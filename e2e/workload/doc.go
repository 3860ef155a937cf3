// Package workload is the test bed's pod workload (cmd/meshecho): a
// server that answers on TCP and UDP with the name of the pod and cluster
// that served the request, and a control API through which the bed makes
// connections *from* the pod, so that they leave from the pod's network
// namespace and cgroup (the cgroup is what the agent's socket load
// balancing hooks).
//
// Wire protocol (TCP and UDP, the same port):
//   - a line "<text>\n" is answered with "<cluster>/<namespace>/<pod> <text>\n"
//     (UDP: one datagram per request, the same answer without a newline);
//   - "SINK <n>\n" on TCP: the server reads n bytes, discards them and
//     answers "<cluster>/<namespace>/<pod> <n>\n" (throughput).
//
// Control API: HTTP/JSON on a unix socket (see Control). Rules: every
// connection the control API opens is closed when the client asks, or when
// the server stops; nothing listens on anything but the pod's port and the
// control socket.
package workload
