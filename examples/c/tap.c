/* tap: prints pipeline events from C, to show the wire format is language-neutral.
 * Events are ZeroMQ multipart [topic, msgpack map]; frame events carry the
 * FrameRef fields under "ref" (see pipeline/protocol.py).
 *
 *   usage: tap ENDPOINT TOPIC_PREFIX N     e.g. tap ipc://$RUN/events.sock frame.captured 5
 *   prints: TOPIC seq=S w=W h=H fmt=F monitor=M   ("-" where a field is missing)
 *   exits 0 after N events; 1 on errors or after 30 s without an event; 2 on bad usage.
 *
 * Build (or `make` in this folder):
 *   cc -std=c11 -Wall -Wextra -O2 -o tap tap.c $(pkg-config --cflags --libs libzmq msgpack)
 * (newer msgpack-c releases name the pkg-config module msgpack-c instead of msgpack). */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_EVENT_BYTES (64 * 1024) /* protocol.MAX_EVENT_BYTES */

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static void field(const msgpack_object *ref, const char *key) {
    const msgpack_object *v = get(ref, key);
    printf(" %s=", key);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) printf("%llu", (unsigned long long)v->via.u64);
    else if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) printf("%lld", (long long)v->via.i64);
    else if (v && v->type == MSGPACK_OBJECT_STR) printf("%.*s", (int)v->via.str.size, v->via.str.ptr);
    else printf("-");
}

static int fail(const char *what) {
    fprintf(stderr, "tap: %s: %s\n", what, zmq_strerror(zmq_errno()));
    return 1;
}

int main(int argc, char **argv) {
    char *end;
    long n = argc == 4 ? strtol(argv[3], &end, 10) : 0;
    if (argc != 4 || *end || n < 1) {
        fprintf(stderr, "usage: %s ENDPOINT TOPIC_PREFIX N\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    static char topic[256], body[MAX_EVENT_BYTES];
    int timeout_ms = 30000, linger = 0, more = 0;
    size_t more_len = sizeof more;
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    if (!sub || zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) ||
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, argv[2], strlen(argv[2])) || zmq_connect(sub, argv[1]))
        return fail(argv[1]);
    for (long i = 0; i < n; i++) {
        int tn = zmq_recv(sub, topic, sizeof topic, 0);
        if (tn < 0) return fail(zmq_errno() == EAGAIN ? "no event within 30 s" : "receive");
        if (zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &more_len) || !more) {
            fprintf(stderr, "tap: event without a body (events are [topic, body])\n");
            return 1;
        }
        int bn = zmq_recv(sub, body, sizeof body, 0);
        if (bn < 0) return fail("receive body");
        if (tn > (int)sizeof topic || bn > (int)sizeof body) {
            fprintf(stderr, "tap: event too large (topic %d, body %d bytes)\n", tn, bn);
            return 1;
        }
        msgpack_unpacked msg;
        msgpack_unpacked_init(&msg);
        size_t off = 0;
        if (msgpack_unpack_next(&msg, body, (size_t)bn, &off) != MSGPACK_UNPACK_SUCCESS ||
            msg.data.type != MSGPACK_OBJECT_MAP) {
            fprintf(stderr, "tap: event %.*s: body is not a msgpack map\n", tn, topic);
            return 1;
        }
        const msgpack_object *ref = get(&msg.data, "ref");
        printf("%.*s", tn, topic);
        for (const char **k = (const char *[]){"seq", "w", "h", "fmt", "monitor", NULL}; *k; k++) field(ref, *k);
        printf("\n");
        msgpack_unpacked_destroy(&msg);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
