/* routes.h: the serving endpoints (server/routes.c): POST /classify and /invocations, GET /healthz,
 * /readyz, /ping, /v1/models, /metrics, registered on the transport with the shared state as
 * their context. */
#ifndef SRV_ROUTES_H
#define SRV_ROUTES_H
#include "http.h"
#include "server.h"

/* Register every endpoint above on h; st must outlive h.  0, or -1 when the table is full. */
int routes_register(srv_http *h, srv_state *st);

#endif
