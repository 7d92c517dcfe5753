# stats.awk - per fault window, per side statistics of the harness histories.
# Plain POSIX awk (works with mawk: no asort, no gensub); numbers are
# doubles, exact for CLOCK_MONOTONIC ns below 2^53 (104 days of uptime).
#
# mode=classify  FILES: windows.tsv sides.tsv HISTORY...
#     windows.tsv: window start_ns end_ns kind label       (tab separated)
#     sides.tsv:   window client side expect limit_ms [avail]
#                  avail: the keys of which the client's side reaches a
#                  quorum of replicas, all | none | k1,k2,... (all if absent)
#     HISTORY:     JSON Lines of client/history.c, one file per client
#                  process, named CLIENT.jsonl or CLIENT-wNNN.jsonl
#   prints one line per operation, assigned to the window of its call:
#     window side expect client op status lat_ns ret_ns limit_ms noq
#   (status ok|fail|unknown; lat_ns and ret_ns -1 when "return" is null;
#   limit_ms is the looser of the call's window and the next one when the
#   call was still in flight as the next window began; noq 1: a call of a
#   "live" side on a key whose quorum that side does not reach)
#
# mode=stall  FILES: windows.tsv OPS (sorted by window, side, ret_ns):
#     for each (window, side) whose expect is "live" or "any", the longest
#     time without any ok completion inside the window (window start and
#     end count as boundaries), and the time of the first ok:
#     window side longest_gap_ns first_ok_ns
#   The answer (ok or not) of a noq call counts as a completion too: such a
#   call must answer within its deadline, not succeed, and a one-thread
#   client busy with it cannot make progress on other keys meanwhile.  So
#   does a "carry" line of mode=classify: a call of the previous window,
#   still in flight when this one began, on a key whose quorum the side does
#   not reach in this one (status carry, noq 1; mode=groups skips it).
#
# mode=groups  FILES: stall.tsv OPS (sorted by window, side, lat_ns):
#     window side expect clients ops ok fail unknown p50_ms p99_ms max_ms
#     late gap_ms noq_ops noq_ok
#   (noq_ops: calls of the group on keys its side reaches no quorum of;
#   noq_ok: how many of those were ok)
#   and, on lines starting with "LATE\t", up to 20 operations slower than
#   their side's limit:  LATE window client op status lat_ms limit_ms

BEGIN { FS = "\t"; OFS = "\t" }

function find_window(t,    lo, hi, mid) {
    # largest w with start[w] <= t; 0 before the first window
    if (t < wstart[0]) return 0
    lo = 0; hi = nw - 1
    while (lo < hi) {
        mid = int((lo + hi + 1) / 2)
        if (wstart[mid] <= t) lo = mid; else hi = mid - 1
    }
    return lo
}

mode == "classify" && FILENAME ~ /windows\.tsv$/ {
    wstart[$1] = $2 + 0; wend[$1] = $3 + 0
    if ($1 + 1 > nw) nw = $1 + 1
    next
}
mode == "classify" && FILENAME ~ /sides\.tsv$/ {
    side[$1, $2] = $3; expect[$1, $2] = $4; limit[$1, $2] = $5
    av = (NF >= 6 && $6 != "") ? $6 : "all"
    avail[$1, $2] = av
    if (av != "all" && av != "none") {
        na = split(av, akeys, ",")
        for (i = 1; i <= na; i++) availkey[$1, $2, akeys[i]] = 1
    }
    next
}
mode == "classify" {
    if (FILENAME != lastfile) {
        lastfile = FILENAME
        name = FILENAME
        sub(/.*\//, "", name); sub(/\.jsonl$/, "", name); sub(/-w[0-9]+$/, "", name)
    }
    line = $0
    gsub(/[{}" ]/, "", line)
    n = split(line, f, /[:,]/)
    if (n < 14) { bad++; next }
    # f: client ID op OP key K value V call C return R ok OK
    call = f[10] + 0
    w = find_window(call)
    s = side[w, name]; if (s == "") s = "other"
    e = expect[w, name]; if (e == "") e = "any"
    lim = limit[w, name]; if (lim == "") lim = 0
    st = f[14] == "true" ? "ok" : (f[14] == "false" ? "fail" : "unknown")
    if (f[12] == "null") { lat = -1; ret = -1 } else { ret = f[12] + 0; lat = ret - call }
    # A call still in flight when the next window's fault began (e.g. a
    # node paused under it) is held to the looser of the two limits.
    if (ret >= 0 && w + 1 < nw && ret > wstart[w + 1] && limit[w + 1, name] + 0 > lim + 0)
        lim = limit[w + 1, name]
    av = avail[w, name]
    noq = 0
    if (e == "live" && av != "" && av != "all")
        noq = (av == "none" || !((w, name, f[6]) in availkey)) ? 1 : 0
    printf "%d\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%d\n", w, s, e, name, f[4], st, lat, ret, lim, noq
    # Still in flight when the next window began, on a key whose quorum the
    # client's side does not reach in that window: its answer (whatever it
    # is) is that side's progress too, since the client was busy with it.
    # A "carry" line: counted by mode=stall only.
    if (ret >= 0 && w + 1 < nw && ret > wstart[w + 1] && expect[w + 1, name] == "live") {
        av = avail[w + 1, name]
        if (av != "" && av != "all" && (av == "none" || !((w + 1, name, f[6]) in availkey)))
            printf "%d\t%s\t%s\t%s\t%s\tcarry\t%.0f\t%.0f\t%s\t1\n", w + 1, side[w + 1, name], "live", name, f[4], lat, ret, lim
    }
    next
}

mode == "stall" && FILENAME ~ /windows\.tsv$/ {
    wstart[$1] = $2 + 0; wend[$1] = $3 + 0
    next
}
function stall_flush() {
    if (cur == "") return
    if (wend[cw] - prev > best) best = wend[cw] - prev
    printf "%d\t%s\t%.0f\t%.0f\n", cw, cs, best, first
}
mode == "stall" {
    if ($3 != "live" && $3 != "any") next
    if ($6 != "ok" && !($10 == 1 && $8 + 0 >= 0)) next
    key = $1 SUBSEP $2
    if (key != cur) {
        stall_flush()
        cur = key; cw = $1; cs = $2
        prev = wstart[cw]; best = 0; first = -1
    }
    t = $8 + 0
    if (t < wstart[cw]) next
    if (t > wend[cw]) t = wend[cw]
    if (first < 0) first = t - wstart[cw]
    if (t - prev > best) best = t - prev
    prev = t
    next
}
END {
    if (mode == "stall") stall_flush()
    if (mode == "groups") groups_flush()
    if (mode == "classify" && bad > 0)
        printf "stats.awk: %d unparsable history lines\n", bad > "/dev/stderr"
}

mode == "groups" && FILENAME ~ /stall\.tsv$/ {
    gapns[$1, $2] = $3
    firstok[$1, $2] = $4
    next
}
function q(p,    i) {
    # nearest rank on the latencies gathered for the group (sorted)
    if (nl == 0) return -1
    i = int(p * nl); if (i < p * nl) i++
    if (i < 1) i = 1
    return lats[i]
}
function groups_flush(    g, clients, c, cl, nc, j) {
    if (gcur == "") return
    # client names in order (F*, R, V*; a few names: insertion sort)
    nc = 0
    for (c in gclients) {
        for (j = ++nc; j > 1 && cl[j - 1] > c; j--) cl[j] = cl[j - 1]
        cl[j] = c
    }
    clients = ""
    for (j = 1; j <= nc; j++) clients = clients (j > 1 ? "," : "") cl[j]
    g = ((gw, gs) in gapns) ? sprintf("%.0f", gapns[gw, gs] / 1e6) : (gexp == "live" || gexp == "any" ? "nook" : "-")
    printf "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%d\t%s\t%d\t%d\n", gw, gs, gexp, clients,
        nops, nok, nfail, nunk, q(0.50) / 1e6, q(0.99) / 1e6, nl ? lats[nl] / 1e6 : -1, nlate, g, nnoq, nnoqok
}
mode == "groups" {
    if ($6 == "carry") next
    key = $1 SUBSEP $2
    if (key != gcur) {
        groups_flush()
        gcur = key; gw = $1; gs = $2; gexp = $3
        nops = nok = nfail = nunk = nl = nlate = nnoq = nnoqok = 0
        for (c in gclients) delete gclients[c]
    }
    gclients[$4] = 1
    nops++
    if ($10 == 1) { nnoq++; if ($6 == "ok") nnoqok++ }
    if ($6 == "ok") nok++; else if ($6 == "fail") nfail++; else nunk++
    if ($7 >= 0) {
        lats[++nl] = $7 + 0
        if ($9 > 0 && $7 > $9 * 1e6) {
            nlate++
            if (nlateall++ < 20)
                printf "LATE\t%d\t%s\t%s\t%s\t%.1f\t%d\n", $1, $4, $5, $6, $7 / 1e6, $9
        }
    }
    next
}
