/* Control messages: what members (and administrators) say to each other
 * about the configuration, carried as opaque bytes by the transport's
 * control channel (transport.h).  The membership change engine
 * (reconfig.h) is their only user; this module only encodes and decodes,
 * strictly: a message from the network is hostile until decoded, so the
 * decoder accepts exactly one well-formed message (version, type, every
 * field in range, lengths within the buffer, nothing left over) and
 * rejects anything else with a reason, never reading outside the buffer.
 *
 * Configurations travel as text: the canonical line of
 * dht_membership_describe ("replicas=R partitions=P members=A,B,C"). */
#ifndef DHT_CONTROL_H
#define DHT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/config_agree.h"

/* The longest configuration line: every member at its longest. */
#define DHT_CONTROL_TEXT_MAX (64 + 128 * 256)
/* The other limits that encode and decode enforce (control.c), named so
 * that a caller can check its input before it builds a message: a member
 * address fits membership.h's DHT_ADDR_MAX buffer with its NUL; a
 * CHANGED text is one operator-sized explanation, not a log. */
#define DHT_CONTROL_ADDR_MAX 255
#define DHT_CONTROL_CHANGED_TEXT_MAX 4096
/* The decoder refuses a longer buffer before it parses anything (the
 * largest valid message is about 70 KiB), so a receiver may refuse such a
 * body as early as it likes. */
#define DHT_CONTROL_ENCODED_MAX ((size_t)256 * 1024)

typedef enum {
    DHT_CTL_AGREE = 1,  /* a Paxos message (request or reply): agree      */
    DHT_CTL_QUERY,      /* request: what view do you hold?                */
    DHT_CTL_VIEW,       /* reply to QUERY and INSTALL: view               */
    DHT_CTL_INSTALL,    /* request: install this view: view               */
    DHT_CTL_CHANGE,     /* request (administrator): change                */
    DHT_CTL_CHANGED,    /* reply to CHANGE: outcome, text, view           */
    DHT_CTL_TYPE_MAX
} dht_control_type;

typedef enum { DHT_CHANGE_ADD = 1, DHT_CHANGE_REMOVE } dht_change_op;

/* A node's view as it tells others (pointers into the message's buffer
 * when decoded; the encoder's caller's when encoding). */
typedef struct {
    uint64_t epoch;       /* of cur; >= 1 (0 only in a QUERY answer of a node
                             that holds no configuration yet, e.g. one
                             waiting to join: then cur_len = 0) */
    const char *cur;      /* configuration of epoch; not NUL-terminated */
    size_t cur_len;
    const char *next;     /* configuration of epoch+1 while joint, else NULL/0 */
    size_t next_len;
    uint64_t cluster_id;  /* 0: none */
    /* joint: in a VIEW, this node copied what the change gives it; in an
     * INSTALL, "copy now" (the old configuration's quorums hold the joint
     * view, so no write on the old one alone can complete any more). */
    bool transfer_done;
    bool removed;         /* this node was removed: it serves nothing */
} dht_control_view;

typedef struct {
    dht_control_type type;
    dht_agree_msg agree;      /* AGREE (value points into the buffer when decoded) */
    dht_control_view view;    /* VIEW, INSTALL, CHANGED */
    dht_change_op op;         /* CHANGE */
    const char *addr;         /* CHANGE: the member's "host:port"; not NUL-terminated */
    size_t addr_len;
    bool ok;                  /* CHANGED: the change is complete */
    const char *text;         /* CHANGED: what happened, for the operator */
    size_t text_len;
} dht_control_msg;

/* Encodes m into a malloc'ed buffer (*out, *len; the caller frees).
 * 0, or -1 (invalid message: a field out of range; out of memory), and
 * then *out and *len are untouched.  Fields that m's type does not carry
 * are ignored.  The rules are the decoder's (control.c), so what one
 * node sends, every node accepts. */
int dht_control_encode(const dht_control_msg *m, uint8_t **out, size_t *len);
/* Decodes buf into *m, whose pointers then point into buf (which must
 * outlive the use of m).  0, or -1 with a one-line reason (err may be
 * NULL) and *m untouched.  Fields that m's type does not carry are zero;
 * an empty cur or text is "" (safe to print), an empty next or agree
 * value is NULL (as the structs' "none" conventions say).  Anything that
 * decodes re-encodes to exactly the same bytes: there is one encoding
 * per message. */
int dht_control_decode(const uint8_t *buf, size_t len, dht_control_msg *m, char *err,
                       size_t errlen);

const char *dht_control_type_name(dht_control_type t);

#endif
