/* rawcall: one unary gRPC call with arbitrary request bytes, for tests that
 * feed servers malformed messages and unknown methods.
 *
 *   rawcall [--config auto|none|FINGERPRINT] HOST:PORT METHOD HEX [TIMEOUT_MS]
 *
 * Prints "STATUS_NAME details" and the reply bytes in hex; exit 0 when a
 * status came back, 1 when the call could not be made, 2 on bad usage.
 * With env TLS_CA it calls over TLS, presenting TLS_CERT/TLS_KEY when set,
 * so tests can see what each kind of caller gets from a TLS node.
 *
 * Replica requests (dht.Replica's methods) must carry the node's
 * configuration fingerprint or the node refuses them (FAILED_PRECONDITION)
 * before it looks at their fields.  --config says what rawcall puts in
 * front of HEX: auto (the default) the fingerprint the node reports in
 * dht.Admin/Stats (nothing if it does not answer), none nothing, or the
 * given one (16 hex digits).  A config field inside HEX overrides it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/codec.h"
#include "net/transport_grpc.h"
#include "base/pem.h"
#include "base/util.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The fingerprint addr reports in its Stats; 0 if it does not answer. */
static uint64_t learn_fingerprint(const dht_grpc_tls *tls, const char *addr, int64_t timeout_ns)
{
    int status;
    char details[256];
    uint8_t resp[64 * 1024];
    size_t len = sizeof resp;
    dht_stats st = {0};
    uint64_t fp = 0;
    if (dht_grpc_call_raw_tls(tls, addr, DHT_CODEC_STATS_METHOD, "", 0, timeout_ns, &status,
                              details, sizeof details, resp, &len) == 0 &&
        status == 0 && dht_codec_decode_stats(resp, len, &st) == 0)
        fp = st.fingerprint;
    dht_codec_stats_free(&st);
    return fp;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: rawcall [--config auto|none|FINGERPRINT] HOST:PORT METHOD HEX [TIMEOUT_MS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *config = "auto";
    if (argc > 1 && strcmp(argv[1], "--config") == 0) {
        if (argc < 3)
            return usage();
        config = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc < 4 || argc > 5)
        return usage();
    uint64_t fp = 0;
    char *end;
    if (strcmp(config, "auto") != 0 && strcmp(config, "none") != 0) {
        fp = strtoull(config, &end, 16);
        if (*config == '\0' || *end != '\0' || strlen(config) > 16 || config[0] == '-') {
            fprintf(stderr, "rawcall: --config '%s' must be auto, none or up to 16 hex digits\n",
                    config);
            return 2;
        }
    }
    uint8_t req[24 + 4096], resp[4096];
    size_t n = strlen(argv[3]) / 2, resp_len = sizeof resp;
    if (strlen(argv[3]) % 2 || n > sizeof req - 24) {
        fprintf(stderr, "rawcall: HEX must be an even number of hex digits\n");
        return 2;
    }
    uint8_t *body = req + 24; /* room for the config field in front */
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(argv[3][2 * i]), lo = hexval(argv[3][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "rawcall: bad hex digit\n");
            return 2;
        }
        body[i] = (uint8_t)(hi * 16 + lo);
    }
    int64_t timeout_ms = 2000;
    if (argc == 5 && dht_parse_i64(argv[4], 1, 600000, &timeout_ms) != 0) {
        fprintf(stderr, "rawcall: bad timeout\n");
        return 2;
    }
    dht_tls_paths paths = {0};
    dht_tls_paths_env(&paths);
    dht_pem_set pem = {0};
    dht_grpc_tls tls = {0};
    char err[512];
    if (paths.ca &&
        dht_grpc_tls_load(paths.cert, paths.key, paths.ca, &pem, &tls, err, sizeof err) != 0) {
        fprintf(stderr, "rawcall: %s\n", err);
        return 1;
    }
    const dht_grpc_tls *tlsp = paths.ca ? &tls : NULL;
    /* The config field, if any, right in front of the given bytes. */
    if (dht_codec_config_field(argv[2], 1, NULL, 0) > 0) {
        if (strcmp(config, "auto") == 0)
            fp = learn_fingerprint(tlsp, argv[1], timeout_ms * DHT_NS_PER_MS);
        if (fp != 0) {
            size_t k = dht_codec_config_field(argv[2], fp, NULL, 0);
            body -= k;
            n += k;
            dht_codec_config_field(argv[2], fp, body, k);
        }
    }
    int status;
    char details[512];
    int rc = dht_grpc_call_raw_tls(tlsp, argv[1], argv[2], body, n, timeout_ms * DHT_NS_PER_MS,
                                   &status, details, sizeof details, resp, &resp_len);
    dht_pem_set_free(&pem);
    if (rc != 0) {
        fprintf(stderr, "rawcall: call failed\n");
        return 1;
    }
    printf("%s %s\n", dht_grpc_status_name(status), details);
    for (size_t i = 0; i < resp_len; i++)
        printf("%02x", resp[i]);
    printf("\n");
    return 0;
}
