/* Reading PEM files: see pem.h. */
#include "base/pem.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Certificates and keys are a few KiB; a CA bundle of a whole system store
 * is about 200 KiB.  Anything far larger is the wrong file. */
#define PEM_MAX (4u << 20)

static char *read_whole(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - 1 - len, f);
        if (len < cap - 1 || cap > PEM_MAX)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || bad || len >= PEM_MAX) {
        snprintf(err, errlen, "cannot read %s: %s", path,
                 buf == NULL ? "out of memory" : bad ? "read error" : "larger than 4 MiB");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Whether text holds a block "-----BEGIN <...label>-----" with a base64
 * body and its END line; for keys, label is a suffix ("RSA PRIVATE KEY",
 * "EC PRIVATE KEY" and PKCS#8 "PRIVATE KEY" all end in "PRIVATE KEY"). */
static bool has_block(const char *text, const char *label, bool suffix)
{
    for (const char *p = strstr(text, "-----BEGIN "); p != NULL;
         p = strstr(p + 1, "-----BEGIN ")) {
        const char *name = p + strlen("-----BEGIN ");
        const char *end = strstr(name, "-----");
        if (end == NULL)
            return false;
        size_t n = (size_t)(end - name), l = strlen(label);
        bool match = suffix ? n >= l && memcmp(end - l, label, l) == 0
                            : n == l && memcmp(name, label, l) == 0;
        if (!match || (suffix && n >= 9 && memcmp(name, "ENCRYPTED", 9) == 0))
            continue;
        const char *body = end + 5, *stop = strstr(body, "-----END ");
        if (stop == NULL)
            return false;
        size_t digits = 0;
        for (const char *c = body; c < stop; c++) {
            if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                       *c) != NULL)
                digits++;
            else if (strchr(" \t\r\n", *c) == NULL)
                return false; /* headers: a legacy encrypted key */
        }
        return digits > 0;
    }
    return false;
}

static char *read_pem(const char *path, bool key, char *err, size_t errlen)
{
    char *text = read_whole(path, err, errlen);
    if (text == NULL)
        return NULL;
    if (key ? has_block(text, "PRIVATE KEY", true) : has_block(text, "CERTIFICATE", false))
        return text;
    if (key && (strstr(text, "ENCRYPTED") != NULL))
        snprintf(err, errlen, "%s: the private key is encrypted; TLS here needs it unencrypted",
                 path);
    else
        snprintf(err, errlen, "%s: no PEM %s in it", path,
                 key ? "private key (-----BEGIN ... PRIVATE KEY-----)"
                     : "certificate (-----BEGIN CERTIFICATE-----)");
    free(text);
    return NULL;
}

static void from_env(const char **path, const char *name)
{
    const char *v = getenv(name);
    if (*path == NULL && v != NULL && *v != '\0')
        *path = v;
}

void dht_tls_paths_env(dht_tls_paths *p)
{
    from_env(&p->cert, "TLS_CERT");
    from_env(&p->key, "TLS_KEY");
    from_env(&p->ca, "TLS_CA");
}

int dht_pem_set_read(dht_pem_set *s, const char *cert_path, const char *key_path,
                     const char *ca_path, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if ((cert_path && (s->cert = read_pem(cert_path, false, err, errlen)) == NULL) ||
        (key_path && (s->key = read_pem(key_path, true, err, errlen)) == NULL) ||
        (ca_path && (s->ca = read_pem(ca_path, false, err, errlen)) == NULL)) {
        dht_pem_set_free(s);
        return -1;
    }
    return 0;
}

void dht_pem_set_free(dht_pem_set *s)
{
    free(s->cert);
    free(s->key);
    free(s->ca);
    memset(s, 0, sizeof *s);
}
