/* placeholder */
#include "base/common.h"
void cm_test_support_placeholder(void);
void cm_test_support_placeholder(void) {}
