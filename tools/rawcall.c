/* rawcall: one unary gRPC call with arbitrary request bytes, for tests that
 * feed servers malformed messages and unknown methods.
 *
 *   rawcall HOST:PORT METHOD HEX [TIMEOUT_MS]
 *
 * Prints "STATUS_NAME details" and the reply bytes in hex; exit 0 when a
 * status came back, 1 when the call could not be made, 2 on bad usage.
 * With env TLS_CA it calls over TLS, presenting TLS_CERT/TLS_KEY when set,
 * so tests can see what each kind of caller gets from a TLS node. */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: rawcall HOST:PORT METHOD HEX [TIMEOUT_MS]\n");
        return 2;
    }
    uint8_t req[4096], resp[4096];
    size_t n = strlen(argv[3]) / 2, resp_len = sizeof resp;
    if (strlen(argv[3]) % 2 || n > sizeof req) {
        fprintf(stderr, "rawcall: HEX must be an even number of hex digits\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(argv[3][2 * i]), lo = hexval(argv[3][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "rawcall: bad hex digit\n");
            return 2;
        }
        req[i] = (uint8_t)(hi * 16 + lo);
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
    int status;
    char details[512];
    int rc = dht_grpc_call_raw_tls(paths.ca ? &tls : NULL, argv[1], argv[2], req, n,
                                   timeout_ms * DHT_NS_PER_MS, &status, details, sizeof details,
                                   resp, &resp_len);
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
