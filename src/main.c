/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "cli/cli.h"
#include "engine/engine.h"
#include "serve/serve.h"

#ifdef CM_WITH_TEST_ENGINE
#include "support/test_engine.h"
#endif

int main(int argc, char *argv[]) {
        cm_engines_register_builtin();
#ifdef CM_WITH_TEST_ENGINE
        cm_test_engine_register();
#endif
        if (argc >= 2 && streq(argv[1], "serve"))
                return cm_serve_main(argc - 1, argv + 1);
        if (argc >= 2 && (streq(argv[1], "version") || streq(argv[1], "--version"))) {
                printf("clustermgmt %s (commit %s)\n", CM_VERSION, CM_COMMIT);
                return 0;
        }
        return cm_cli_main(argc, argv);
}
