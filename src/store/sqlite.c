/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"
#include "store/store.h"
const struct cm_store_ops cm_store_sqlite_ops = { .name = "sqlite", .scheme = "sqlite" };
