/* embed.h: POST /embed (image embeddings: per image, the pooled feature vector the head sees,
 * optionally L2-normalized) and GET /openapi.json, on the transport's connection API.  /embed
 * reads images exactly as /classify does (multipart, raw body, JSON base64) and runs them
 * through the same batcher, deadlines and limits. */
#ifndef SRV_EMBED_H
#define SRV_EMBED_H
#include "server.h"

void embed_handle(srv_conn *c, srv_state *st);      /* POST /embed[?normalize=true] */
void openapi_handle(srv_conn *c, srv_state *st);    /* GET /openapi.json */

#endif
