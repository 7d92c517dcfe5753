/* The PEM files of TLS (certificates, private keys, CA bundles), read
 * whole and checked for the block they must hold, so that a missing,
 * swapped or wrong file is named when a process starts instead of failing
 * every handshake later.  gRPC parses the contents (net/transport_grpc.h,
 * dht_grpc_tls_check); this only reads text. */
#ifndef DHT_PEM_H
#define DHT_PEM_H

#include <stddef.h>

/* Where a process's TLS files are: its flags, else the environment. */
typedef struct {
    const char *cert, *key, *ca;
} dht_tls_paths;

/* Sets each path still NULL from TLS_CERT, TLS_KEY, TLS_CA (when set and
 * not empty), the variables every binary reads. */
void dht_tls_paths_env(dht_tls_paths *p);

/* The text of a process's TLS files; each NULL when its path was. */
typedef struct {
    char *cert, *key, *ca;
} dht_pem_set;

/* Reads the files whose path is not NULL: the certificate chain and the CA
 * must hold a CERTIFICATE block, the key an unencrypted PRIVATE KEY block.
 * 0, or -1 with a one-line reason naming the file in err (and s empty).
 * The caller frees s with dht_pem_set_free. */
int dht_pem_set_read(dht_pem_set *s, const char *cert_path, const char *key_path,
                     const char *ca_path, char *err, size_t errlen);
void dht_pem_set_free(dht_pem_set *s);

#endif
