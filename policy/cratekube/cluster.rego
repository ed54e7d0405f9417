# SPDX-License-Identifier: Apache-2.0
#
# The decision over a cluster's policy input (docs/policy.md), as clustermgmt's remote mode asks for
# it: POST /v1/data/cratekube/cluster {"input": ...} -> {"result": {"deny": [...], "warn": [...]}}.
# Each entry is {"rule", "message", "field"}; a rule's effect (deny or warn) comes from the
# environment's settings in input.settings.
package cratekube.cluster

import data.cratekube.rules

deny contains v if {
	some v in rules.violations
	rules.effect(v.rule) == "deny"
}

warn contains v if {
	some v in rules.violations
	rules.effect(v.rule) == "warn"
}
