#include "history.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct history {
    FILE *f;
    pthread_mutex_t mu;
    bool failed;
};

history *history_open(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return NULL;
    history *h = calloc(1, sizeof *h);
    if (h == NULL) {
        fclose(f);
        return NULL;
    }
    h->f = f;
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void history_record(history *h, int64_t client, bool is_put, int64_t key, int64_t value,
                    int64_t call_ns, int64_t return_ns, int ok)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    int n = fprintf(h->f,
                    "{\"client\":%lld,\"op\":\"%s\",\"key\":%lld,\"value\":%lld,\"call\":%lld,"
                    "\"return\":%lld,\"ok\":%s}\n",
                    (long long)client, is_put ? "put" : "get", (long long)key, (long long)value,
                    (long long)call_ns, (long long)return_ns,
                    ok > 0 ? "true" : ok == 0 ? "false" : "null");
    if (n < 0)
        h->failed = true;
    pthread_mutex_unlock(&h->mu);
}

int history_close(history *h)
{
    if (h == NULL)
        return 0;
    bool failed = h->failed;
    if (fclose(h->f) != 0)
        failed = true;
    pthread_mutex_destroy(&h->mu);
    free(h);
    return failed ? -1 : 0;
}
