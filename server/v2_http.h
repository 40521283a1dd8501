/* v2_http.h: the Open Inference Protocol (KServe v2) HTTP routes on the transport's connection
 * API: GET /v2 (server metadata), /v2/health/live, /v2/health/ready,
 * /v2/models/{name}[/versions/{v}] (model metadata), .../ready, and POST .../infer, which runs
 * every image through the same batcher, deadlines and limits as /classify (server/v2proto.h
 * has the request and response formats).  Errors are {"error": "<message>"}, as the protocol
 * says.  The model's one version is "1".
 *
 * Threads: like every handler, on the transport's threads; the infer answer is written by the
 * job's done callback. */
#ifndef SRV_V2_HTTP_H
#define SRV_V2_HTTP_H
#include "http.h"
#include "server.h"

/* Register "/v2" and every path under "/v2/" on h (the handler dispatches on the path and
 * method itself: unknown paths 404, other methods 405 with Allow); st must outlive h.
 * 0, or -1 when the route table is full. */
int v2_http_register(srv_http *h, srv_state *st);

#endif
