// liburcu, QSBR flavour, for Swift: the top-level header first (it defines the
// flavour's API names), then the macros Swift cannot import as inline functions.
#ifndef GATEWAY_CURCU_SHIM_H
#define GATEWAY_CURCU_SHIM_H

#define URCU_INLINE_SMALL_FUNCTIONS
#include <urcu-qsbr.h>
#include <urcu/wfcqueue.h>

static inline void gw_rcu_register_thread(void) { rcu_register_thread(); }
static inline void gw_rcu_unregister_thread(void) { rcu_unregister_thread(); }
static inline void gw_rcu_quiescent_state(void) { rcu_quiescent_state(); }
static inline void gw_rcu_thread_offline(void) { rcu_thread_offline(); }
static inline void gw_rcu_thread_online(void) { rcu_thread_online(); }
static inline void gw_synchronize_rcu(void) { synchronize_rcu(); }
static inline void gw_rcu_barrier(void) { rcu_barrier(); }
static inline void gw_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *)) {
    call_rcu(head, fn);
}

// wfcq: the header's cds_wfcq_head_ptr_t is a transparent union Swift cannot pass, so
// these take the lock-free head (single consumer: the __ calls need no dequeue lock).
static inline void gw_wfcq_init(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t) { __cds_wfcq_init(h, t); }
// True when the queue was empty: the edge on which to ring.
static inline bool gw_wfcq_enqueue(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t, struct cds_wfcq_node *n) { return !cds_wfcq_enqueue(h, t, n); }
// Moves everything queued in src onto dest (one exchange on src's tail); CDS_WFCQ_RET_SRC_EMPTY if none.
static inline enum cds_wfcq_ret gw_wfcq_splice(struct __cds_wfcq_head *dh, struct cds_wfcq_tail *dt, struct __cds_wfcq_head *sh, struct cds_wfcq_tail *st) { return __cds_wfcq_splice_blocking(dh, dt, sh, st); }
// Iteration without dequeuing (the cds_wfcq_for_each_blocking macro's two halves); NULL at the end.
static inline struct cds_wfcq_node *gw_wfcq_first(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t) { return __cds_wfcq_first_blocking(h, t); }
static inline struct cds_wfcq_node *gw_wfcq_next(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t, struct cds_wfcq_node *n) { return __cds_wfcq_next_blocking(h, t, n); }

#endif
