/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rke-noop: a STAND-IN for the rke binary, for the rke-overhead benchmark only (bench/run.py --only rke).
 *
 * It measures nothing itself: the service runs it where it would run rke, so that what is left of an
 * operation's time is the service's own work around rke (work dir, materialised files, copies into the
 * state vault, wipe). A Python stand-in (tests/support/rke-standin) would add tens of milliseconds of
 * interpreter start-up to every run and swamp that figure; this one only:
 *   up --config DIR/FILE          writes DIR/cluster.rkestate (a small JSON state with a public kube-ca
 *                                 certificate, no key) and DIR/kube_config_cluster.yml (with a server:
 *                                 line), both 0600, then exits 0;
 *   remove ... --config DIR/FILE  deletes them and exits 0;
 *   config --list-version [--all] prints rke v1.8.6's Kubernetes versions;
 *   --version                     prints rke's version line;
 * and exits 0 without doing anything for every other command. It never dials a node.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/banned.h"

/* A throwaway self-signed certificate (its key was never kept): lets the service fingerprint a kube-ca. */
#define KUBE_CA_PEM                                                                                         \
        "-----BEGIN CERTIFICATE-----\\n"                                                                    \
        "MIIBeTCCAR+gAwIBAgIUGWpS/Bx22eM/jItFx9UrsdZwSpYwCgYIKoZIzj0EAwIw\\n"                               \
        "EjEQMA4GA1UEAwwHa3ViZS1jYTAeFw0yNjExMjUxNTI2MTlaFw0zNjExMjIxNTI2\\n"                               \
        "MTlaMBIxEDAOBgNVBAMMB2t1YmUtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\\n"                               \
        "AATGa+iFTVPV3DodhelQMktuQoa/ctdLnZSXUZV/NMC+DST47irNqBklZiEOjDa/\\n"                               \
        "TthGeKD3xQ/WJADq32z91piLo1MwUTAdBgNVHQ4EFgQUzPK2pQ0OBQt7pnMOmwjo\\n"                               \
        "572D7C4wHwYDVR0jBBgwFoAUzPK2pQ0OBQt7pnMOmwjo572D7C4wDwYDVR0TAQH/\\n"                               \
        "BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAv6ZgUs6xYdf/cxr6sgkoMpTFKW46\\n"                               \
        "zkhCWjpkETLeDGsCIEspvTKJU32DMwqSEJ1k6uS0VKMtJ23X2RESvaVTwPuf\\n"                                   \
        "-----END CERTIFICATE-----\\n"

static const char rkestate[] =
        "{\n"
        "  \"desiredState\": {\n"
        "    \"rkeConfig\": {\"clusterName\": \"bench\", \"kubernetesVersion\": \"v1.32.7-rancher1-1\"},\n"
        "    \"certificatesBundle\": {\"kube-ca\": {\"name\": \"kube-ca\", \"certificatePEM\": "
        "\"" KUBE_CA_PEM "\"}}\n"
        "  },\n"
        "  \"currentState\": {}\n"
        "}\n";

static const char kubeconfig[] = "apiVersion: v1\n"
                                 "kind: Config\n"
                                 "clusters:\n"
                                 "- cluster:\n"
                                 "    api-version: v1\n"
                                 "    server: \"https://192.0.2.10:6443\"\n"
                                 "  name: \"bench\"\n"
                                 "contexts:\n"
                                 "- context:\n"
                                 "    cluster: \"bench\"\n"
                                 "    user: \"kube-admin-bench\"\n"
                                 "  name: \"bench\"\n"
                                 "current-context: \"bench\"\n"
                                 "users:\n"
                                 "- name: \"kube-admin-bench\"\n"
                                 "  user: {}\n";

static int write_file(const char *dir, const char *name, const char *data, size_t n) {
        char path[PATH_MAX];
        int fd, k = snprintf(path, sizeof(path), "%s/%s", dir, name);

        if (k < 0 || (size_t) k >= sizeof(path))
                return -ENAMETOOLONG;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        while (n > 0) {
                ssize_t w = write(fd, data, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        close(fd);
                        return -EIO;
                }
                data += w;
                n -= (size_t) w;
        }
        return close(fd) < 0 ? -errno : 0;
}

static int remove_file(const char *dir, const char *name) {
        char path[PATH_MAX];
        int k = snprintf(path, sizeof(path), "%s/%s", dir, name);

        if (k < 0 || (size_t) k >= sizeof(path))
                return -ENAMETOOLONG;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int main(int argc, char **argv) {
        const char *config = NULL, *cmd = argc > 1 ? argv[1] : "";
        char dir[PATH_MAX];
        bool all = false, list = false;
        char *slash;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
                        config = argv[++i];
                else if (strncmp(argv[i], "--config=", 9) == 0)
                        config = argv[i] + 9;
                else if (strcmp(argv[i], "--all") == 0)
                        all = true;
                else if (strcmp(argv[i], "--list-version") == 0)
                        list = true;
        }
        if (strcmp(cmd, "--version") == 0) {
                puts("rke version v1.8.6");
                return 0;
        }
        if (strcmp(cmd, "config") == 0 && list) {
                fputs(all ? "v1.31.11-rancher1-1\nv1.30.14-rancher1-1\nv1.32.7-rancher1-1\n"
                          : "v1.32.7-rancher1-1\n",
                      stdout);
                return 0;
        }
        if (!config || (strcmp(cmd, "up") != 0 && strcmp(cmd, "remove") != 0))
                return 0;
        r = snprintf(dir, sizeof(dir), "%s", config);
        if (r < 0 || (size_t) r >= sizeof(dir))
                return 1;
        slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        else
                dir[0] = '.', dir[1] = 0;
        if (strcmp(cmd, "remove") == 0)
                r = remove_file(dir, "kube_config_cluster.yml") < 0 ||
                    remove_file(dir, "cluster.rkestate") < 0;
        else
                r = write_file(dir, "cluster.rkestate", rkestate, sizeof(rkestate) - 1) < 0 ||
                    write_file(dir, "kube_config_cluster.yml", kubeconfig, sizeof(kubeconfig) - 1) < 0;
        if (r)
                fprintf(stderr,
                        "time=\"1970-01-01T00:00:00Z\" level=fatal msg=\"rke-noop: cannot write in %s\"\n",
                        dir);
        return r ? 1 : 0;
}
