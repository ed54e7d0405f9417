/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make bench, vault section: an encrypted, versioned vault write of a 200 KB file (an rkestate of a
 * large cluster) against a plain write+fsync of the same bytes (open with O_TRUNC, write, fsync,
 * close) in the same directory tree, interleaved in the same run (plus, for context, the same bytes
 * through the bare atomic protocol of cm_write_file_atomic: temp file, fsync, rename, fsync of the
 * directory); and reads of the newest version against a plain read. The three writes take turns in
 * going first, so that none always follows the same one. Times are CLOCK_MONOTONIC in ns; prints one
 * JSON object with p50/p90/p99 in µs.
 *
 *   vault-bench [--dir DIR] [--iterations N] [--size BYTES] [--fixed-order]
 */
#include "base/common.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "vault/crypto.h"
#include "vault/vault.h"

static uint64_t mono_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p) {
        qsort(v, n, sizeof(*v), cmp_u64);
        return (double) v[(size_t) ((double) (n - 1) * p)] / 1000.0;
}

static int plain_write(const char *path, const void *data, size_t n) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const uint8_t *p = data;
        size_t off = 0;

        if (fd < 0)
                return -errno;
        while (off < n) {
                ssize_t w = write(fd, p + off, n - off);
                if (w < 0) {
                        close(fd);
                        return -errno;
                }
                off += (size_t) w;
        }
        if (fsync(fd) < 0) {
                close(fd);
                return -errno;
        }
        return close(fd) < 0 ? -errno : 0;
}

static int plain_read(const char *path, uint8_t *buf, size_t n) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t off = 0;

        if (fd < 0)
                return -errno;
        while (off < n) {
                ssize_t k = read(fd, buf + off, n - off);
                if (k <= 0)
                        break;
                off += (size_t) k;
        }
        close(fd);
        return off == n ? 0 : -EIO;
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "dir", required_argument, NULL, 'd' },
                { "iterations", required_argument, NULL, 'n' },
                { "size", required_argument, NULL, 's' },
                { "fixed-order", no_argument, NULL, 'f' },
                {},
        };
        const char *base = getenv("TMPDIR") ?: "/tmp";
        unsigned iterations = 200, size = 200 * 1024;
        bool fixed_order = false;
        char dir[PATH_MAX], plain_path[PATH_MAX + 16], atomic_path[PATH_MAX + 16], state[PATH_MAX + 16];
        struct cm_keyring *kr = NULL;
        struct cm_vault *v = NULL;
        uint64_t *tw_plain, *tw_vault, *tw_atomic, *tr_plain, *tr_vault;
        uint8_t *data, *rbuf;
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        base = optarg;
                        break;
                case 'n':
                        if (safe_atou(optarg, &iterations) < 0 || iterations < 10)
                                return 2;
                        break;
                case 's':
                        if (safe_atou(optarg, &size) < 0 || size < 1)
                                return 2;
                        break;
                case 'f':
                        fixed_order = true;
                        break;
                default:
                        return 2;
                }
        }
        if (cm_snprintf(dir, sizeof(dir), "%s/vault-bench-XXXXXX", base) < 0 || !mkdtemp(dir)) {
                fprintf(stderr, "vault-bench: cannot make a directory under %s\n", base);
                return 1;
        }
        (void) cm_snprintf(plain_path, sizeof(plain_path), "%s/plain.rkestate", dir);
        (void) cm_snprintf(atomic_path, sizeof(atomic_path), "%s/atomic.rkestate", dir);
        (void) cm_snprintf(state, sizeof(state), "%s/state", dir);
        data = malloc(size);
        rbuf = malloc(size);
        tw_plain = new0(uint64_t, iterations);
        tw_vault = new0(uint64_t, iterations);
        tw_atomic = new0(uint64_t, iterations);
        tr_plain = new0(uint64_t, iterations);
        tr_vault = new0(uint64_t, iterations);
        if (!data || !rbuf || !tw_plain || !tw_vault || !tw_atomic || !tr_plain || !tr_vault ||
            cm_random_bytes(data, size) < 0 || cm_keyring_generate(&kr) < 0 ||
            cm_vault_open(state, kr, CM_VAULT_KEEP_DEFAULT, &v) < 0) {
                fprintf(stderr, "vault-bench: setup failed\n");
                return 1;
        }
        /* warm-up: one of each, so that directories exist and the page cache is in the same state */
        if (plain_write(plain_path, data, size) < 0 ||
            cm_vault_write(v, "cl_bench", "cluster.rkestate", data, size, -1, NULL) < 0)
                return 1;
        for (unsigned i = 0; i < iterations; i++) {
                char *out = NULL;
                size_t n = 0;
                uint64_t t0;

                data[i % size] ^= 1; /* new bytes each time */
                for (unsigned k = 0; k < 3; k++) {
                        int r = 0;

                        t0 = mono_nsec();
                        switch (fixed_order ? k : (i + k) % 3) {
                        case 0:
                                r = plain_write(plain_path, data, size);
                                tw_plain[i] = mono_nsec() - t0;
                                break;
                        case 1:
                                r = cm_vault_write(v, "cl_bench", "cluster.rkestate", data, size, -1, NULL);
                                tw_vault[i] = mono_nsec() - t0;
                                break;
                        default:
                                r = cm_write_file_atomic(atomic_path, data, size, 0600);
                                tw_atomic[i] = mono_nsec() - t0;
                                break;
                        }
                        if (r < 0)
                                return 1;
                }
                t0 = mono_nsec();
                if (plain_read(plain_path, rbuf, size) < 0)
                        return 1;
                tr_plain[i] = mono_nsec() - t0;
                t0 = mono_nsec();
                if (cm_vault_read(v, "cl_bench", "cluster.rkestate", 0, &out, &n, NULL) < 0 || n != size)
                        return 1;
                tr_vault[i] = mono_nsec() - t0;
                cm_vault_data_free(out, n);
        }
        {
                double wp50 = pct(tw_plain, iterations, 0.5), wv50 = pct(tw_vault, iterations, 0.5);
                double wp90 = pct(tw_plain, iterations, 0.9), wv90 = pct(tw_vault, iterations, 0.9);
                double wp99 = pct(tw_plain, iterations, 0.99), wv99 = pct(tw_vault, iterations, 0.99);
                double wa50 = pct(tw_atomic, iterations, 0.5), wa99 = pct(tw_atomic, iterations, 0.99);
                double rp50 = pct(tr_plain, iterations, 0.5), rv50 = pct(tr_vault, iterations, 0.5);
                double rp90 = pct(tr_plain, iterations, 0.9), rv90 = pct(tr_vault, iterations, 0.9);
                double rp99 = pct(tr_plain, iterations, 0.99), rv99 = pct(tr_vault, iterations, 0.99);

                printf("{\"size\":%u,\"iterations\":%u,\"order\":\"%s\","
                       "\"write_plain_fsync_p50_us\":%.1f,\"write_plain_fsync_p90_us\":%.1f,"
                       "\"write_plain_fsync_p99_us\":%.1f,"
                       "\"write_vault_p50_us\":%.1f,\"write_vault_p90_us\":%.1f,\"write_vault_p99_us\":%.1f,"
                       "\"write_ratio_p50\":%.2f,\"write_ratio_p99\":%.2f,"
                       "\"write_atomic_plain_p50_us\":%.1f,\"write_atomic_plain_p99_us\":%.1f,"
                       "\"write_ratio_vs_atomic_p50\":%.2f,"
                       "\"read_plain_p50_us\":%.1f,\"read_plain_p90_us\":%.1f,\"read_plain_p99_us\":%.1f,"
                       "\"read_vault_p50_us\":%.1f,\"read_vault_p90_us\":%.1f,\"read_vault_p99_us\":%.1f,"
                       "\"read_ratio_p50\":%.2f}\n",
                       size, iterations, fixed_order ? "fixed" : "rotating", wp50, wp90, wp99, wv50, wv90,
                       wv99, wv50 / wp50, wv99 / wp99, wa50, wa99, wv50 / wa50, rp50, rp90, rp99, rv50, rv90,
                       rv99, rv50 / rp50);
        }
        /* clean up */
        (void) cm_vault_archive(v, "cl_bench", 1);
        (void) cm_vault_purge(v, UINT64_MAX);
        cm_vault_close(v);
        cm_keyring_free(kr);
        (void) unlink(plain_path);
        (void) unlink(atomic_path);
        {
                char p[PATH_MAX + 16];
                (void) cm_snprintf(p, sizeof(p), "%s/live", state);
                (void) rmdir(p);
                (void) cm_snprintf(p, sizeof(p), "%s/archive", state);
                (void) rmdir(p);
        }
        (void) rmdir(state);
        (void) rmdir(dir);
        free(data);
        free(rbuf);
        free(tw_plain);
        free(tw_vault);
        free(tw_atomic);
        free(tr_plain);
        free(tr_vault);
        return 0;
}
