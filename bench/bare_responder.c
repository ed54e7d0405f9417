/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"
int main(void) { return 0; }
