/* abseil's deadlock detector, switched off before gRPC starts: a symbol
 * lookup (dlsym) that has nothing to do with the transport's calls, so it
 * stands alone.  Both start functions (dht_grpc_start, dht_grpc_call_raw)
 * call it.  It needs no gRPC header: abseil's setter is found by name. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "net/transport_grpc.h"

/* ---- abseil's deadlock detector ---------------------------------------------
 * Debian builds abseil without NDEBUG, so every absl::Mutex::Lock inside
 * gRPC also runs abseil's deadlock detector: it takes one process-wide spin
 * lock, updates a graph of lock orders, and on a cycle aborts the process.
 * It costs every gRPC thread on every lock, and threads that call into
 * gRPC at once (a worker and the group-commit thread answering streamed
 * writes) contend on that spin lock; off, CPU per put fell about 4% at the
 * servers and 7% at the load generator (docs/bench.md).  abseil's release
 * builds have it off; here abseil's own setter,
 * absl::SetMutexDeadlockDetectionMode(OnDeadlockCycle::kIgnore), switches it
 * off before gRPC starts.  It is C++, so it is looked up by its mangled name
 * (Debian's inline namespace first, then upstream's for the same release);
 * not found means another abseil build, which is left as it is. */

static const char *const absl_setter_names[] = {
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
};
#define ABSL_ON_DEADLOCK_CYCLE_IGNORE 0 /* absl::OnDeadlockCycle::kIgnore */

static pthread_once_t absl_once = PTHREAD_ONCE_INIT;
static bool absl_checks_off;

static void absl_checks_off_once(void)
{
    for (size_t i = 0; i < sizeof absl_setter_names / sizeof *absl_setter_names; i++) {
        void (*set)(int);
        /* POSIX's way to turn dlsym's result into a function pointer. */
        *(void **)&set = dlsym(RTLD_DEFAULT, absl_setter_names[i]);
        if (set != NULL) {
            set(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
            absl_checks_off = true;
            return;
        }
    }
}

int dht_grpc_abseil_deadlock_checks_off(void)
{
    pthread_once(&absl_once, absl_checks_off_once);
    return absl_checks_off;
}
