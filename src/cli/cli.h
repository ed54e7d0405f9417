/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The command line client: `clustermgmt [global flags] <noun> <verb> [args]`. Every subcommand but
 * `serve` and `version` lands here; it talks to the service through src/client only.
 *
 * Exit status: 0 success, 1 failure (an error answer, a transport error, a failed or cancelled
 * operation), 2 usage error, 3 timed out waiting for an operation.
 */

enum {
        CM_EXIT_OK = 0,
        CM_EXIT_FAILURE = 1,
        CM_EXIT_USAGE = 2,
        CM_EXIT_TIMEOUT = 3,
};

/* Runs the command in argv (argv[0] is the program) with stdout and stderr; returns the exit status. */
int cm_cli_main(int argc, char *argv[]);

/*
 * Same, writing to out and err instead of stdout and stderr. The environment (CLUSTERMGMT_*) is read
 * as for cm_cli_main(); argv is not modified.
 */
int cm_cli_run(FILE *out, FILE *err, int argc, char *argv[]);
