/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark baseline: a bare libmicrohttpd responder with the service's threading setup (internal
 * polling thread, epoll, thread pool) answering every GET with fixed bytes read from files — the
 * same bytes the service returns. Usage: bare-responder PORT THREADS PATH=FILE...
 */
#include "base/common.h"

#include <microhttpd.h>
#include <signal.h>

#include "base/fileio.h"
#include "base/parse.h"

struct entry {
        const char *path;
        char *body;
        size_t len;
};

static struct entry entries[8];
static size_t n_entries;

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
        static int marker;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        /* Like the service: answer on the second call, once the request is complete (keeps the
         * connection alive; answering in the first call makes libmicrohttpd close it). */
        if (!*con_cls) {
                *con_cls = &marker;
                return MHD_YES;
        }
        for (size_t i = 0; i < n_entries; i++) {
                if (!streq(entries[i].path, url))
                        continue;
                resp = MHD_create_response_from_buffer(entries[i].len, entries[i].body,
                                                       MHD_RESPMEM_PERSISTENT);
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
                ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
                MHD_destroy_response(resp);
                return ret;
        }
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        ret = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, resp);
        MHD_destroy_response(resp);
        return ret;
}

int main(int argc, char *argv[]) {
        struct MHD_Daemon *d;
        unsigned port, threads;
        sigset_t mask;
        int sig;

        if (argc < 4 || safe_atou(argv[1], &port) < 0 || safe_atou(argv[2], &threads) < 0) {
                fprintf(stderr, "usage: bare-responder PORT THREADS PATH=FILE...\n");
                return 2;
        }
        for (int i = 3; i < argc && n_entries < ELEMENTSOF(entries); i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq)
                        return 2;
                *eq = 0;
                entries[n_entries].path = argv[i];
                if (cm_read_file(eq + 1, 64 * 1024 * 1024, false, &entries[n_entries].body,
                                 &entries[n_entries].len) < 0) {
                        fprintf(stderr, "cannot read %s\n", eq + 1);
                        return 1;
                }
                n_entries++;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME,
                             (uint16_t) port, NULL, NULL, handler, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                             threads, MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_LISTEN_BACKLOG_SIZE,
                             1024u, MHD_OPTION_END);
        if (!d)
                return 1;
        printf("ready\n");
        fflush(stdout);
        (void) sigwait(&mask, &sig);
        MHD_stop_daemon(d);
        for (size_t i = 0; i < n_entries; i++)
                free(entries[i].body);
        return 0;
}
