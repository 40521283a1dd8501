/* embed.h: POST /embed (image embeddings: per image, the pooled feature vector the head sees,
 * optionally L2-normalized) and GET /openapi.json, on the transport's connection API.  /embed
 * reads images exactly as /classify does (multipart, raw body, JSON base64) and runs them
 * through the same batcher, deadlines and limits. */
#ifndef SRV_EMBED_H
#define SRV_EMBED_H
#include "http.h"
#include "server.h"

/* Register POST /embed[?normalize=true] and GET /openapi.json on h; st must outlive h.
 * 0, or -1 when the route table is full. */
int embed_register(srv_http *h, srv_state *st);

#endif
