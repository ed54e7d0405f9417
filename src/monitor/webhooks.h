/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "api/model.h"
#include "base/common.h"
#include "base/strbuf.h"

struct cm_service;
struct cm_webhooks;

/*
 * The webhook dispatcher: one thread that POSTs the store's events to the webhooks of their
 * environment (store.h webhook_*), through one libcurl multi handle for all of them (no thread per
 * webhook, so a dead or slow endpoint holds up nothing but its own webhook).
 *
 * - Each webhook gets the events of its environment after its cursor, in order, one at a time; events
 *   whose type is not in its list (an empty list means every type) are passed over by moving the
 *   cursor. Webhooks are served side by side.
 * - A delivery is `POST url` with the event as JSON (cm_event_encode) and the headers Content-Type,
 *   User-Agent, X-CrateKube-Event (type), X-CrateKube-Delivery (event id), X-CrateKube-Timestamp (unix
 *   seconds) and X-CrateKube-Signature (`sha256=` + lowercase hex HMAC-SHA256 over "<timestamp>.<body>"
 *   keyed with the environment secret the webhook names, read from the state vault for that one
 *   attempt and wiped right after signing).
 * - A 2xx answer is delivered: the attempt is recorded and the cursor moved past the event in one
 *   store write. Anything else (another status, no connection, 10 s passed, the secret missing) is a
 *   failed attempt, recorded with a short reason (never the answer's body, never the secret, the URL
 *   only as scheme://host[:port]/path), and the same event is tried again after 1 s, 2 s, 4 s ...
 *   (at most 300 s); the 8th failed attempt is recorded as given up and the cursor moves past the
 *   event.
 * - Redirects are not followed; only http:// and https:// are spoken; TLS peers are verified against
 *   the system's CAs; the environment's proxy variables do not apply.
 * - The thread wakes on cm_webhooks_poke() and at least every second; it re-reads the webhooks on a
 *   poke and at least every 2 s, and prunes events older than 35 days once an hour.
 *
 * Delivery is at least once: an event whose delivery succeeded but whose record could not be written
 * (or that was in flight when the service stopped) is sent again later. Receivers deduplicate by
 * X-CrateKube-Delivery.
 */

/*
 * Starts the dispatcher thread for the service's store and vault (svc->vault NULL: every delivery
 * fails for want of its secret). svc must outlive the dispatcher. Returns 0 with *ret set, or a
 * negative errno (nothing is left running).
 */
_warn_unused_result_ int cm_webhooks_start(struct cm_service *svc, struct cm_webhooks **ret);

/*
 * Stops the thread (a transfer in flight is abandoned: its event is sent again at the next start),
 * joins it and frees everything. Accepts NULL; returns NULL. No cm_webhooks_poke() may run during or
 * after it: stop every thread that pokes first.
 */
struct cm_webhooks *cm_webhooks_stop(struct cm_webhooks *w);

/*
 * Says that new events or webhooks may exist. Thread-safe and cheap: it never blocks and never fails
 * (pokes that come while the dispatcher is busy collapse into one). Accepts NULL.
 */
void cm_webhooks_poke(struct cm_webhooks *w);

/*
 * Appends the dispatcher's Prometheus metrics to out: clustermgmt_webhook_deliveries_total{outcome=
 * "delivered"|"failed"|"gave-up"} (attempts since the start, by outcome) and
 * clustermgmt_webhook_pending_events (events of the webhooks' types after their cursors, not delivered
 * yet; only the next 100 events of a webhook's environment are looked at). Thread-safe; accepts NULL
 * (appends nothing).
 * Returns 0 or -ENOBUFS/-ENOMEM.
 */
_warn_unused_result_ int cm_webhooks_metrics(struct cm_webhooks *w, struct strbuf *out);

/*
 * The JSON of an event as webhooks and the event stream carry it: {"id","time","type","environment",
 * "cluster"} followed by the members of e->data_json (an object; members named like one of those five
 * are left out, and data that is not an object adds nothing). Compact, one line. Appends to out;
 * returns 0, or -ENOBUFS/-ENOMEM with out left as it was.
 */
_warn_unused_result_ int cm_event_encode(const struct cm_event *e, struct strbuf *out);
