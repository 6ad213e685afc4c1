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

#endif
