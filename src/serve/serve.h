/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `clustermgmt serve`: flags, bootstrap, the service and the HTTP server until SIGTERM/SIGINT. */
int cm_serve_main(int argc, char *argv[]);
