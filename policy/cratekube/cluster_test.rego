# SPDX-License-Identifier: Apache-2.0
#
# opa test policy/ — a few decisions of the bundle. The comparison with the built-in rules over many
# more inputs is tests/integration/test_policy_rego.py.
package cratekube.cluster_test

import data.cratekube.cluster

node(address, roles) := {"address": address, "user": "ubuntu", "roles": roles, "sshKey": "ops"}

all_roles := ["controlplane", "etcd", "worker"]

rke_input(nodes, env_labels, rules) := {
	"operation": "create",
	"principal": "admin",
	"environment": {"name": "env", "labels": env_labels},
	"cluster": {"name": "east", "labels": {}, "spec": {"engine": "rke", "rke": {"nodes": nodes}}},
	"engine": {"name": "rke", "versions": null, "default": null},
	"settings": {"rules": rules},
}

three := [node("10.0.0.1", all_roles), node("10.0.0.2", all_roles), node("10.0.0.3", all_roles)]

rules_of(vs) := {v.rule | some v in vs}

test_three_nodes_pass if {
	cluster.deny == set() with input as rke_input(three, {}, {})
	cluster.warn == set() with input as rke_input(three, {}, {})
}

test_production_needs_three_etcd_nodes if {
	d := cluster.deny with input as rke_input([node("10.0.0.1", all_roles)], {"tier": "production"}, {})
	rules_of(d) == {"production-etcd-quorum"}
	some v in d
	v.field == "spec.rke.nodes"
	contains(v.message, "this cluster has 1")
}

test_production_minimum_is_a_parameter if {
	rules := {"production-etcd-quorum": {"params": {"minEtcdNodes": 1}}}
	cluster.deny == set() with input as rke_input([node("10.0.0.1", all_roles)], {"tier": "production"}, rules)
}

test_even_etcd_count_warns if {
	two := [node("10.0.0.1", all_roles), node("10.0.0.2", all_roles)]
	rules_of(cluster.warn) == {"odd-etcd-count"} with input as rke_input(two, {}, {})
	cluster.deny == set() with input as rke_input(two, {}, {})
}

test_effect_can_be_changed if {
	two := [node("10.0.0.1", all_roles), node("10.0.0.2", all_roles)]
	rules := {"odd-etcd-count": {"effect": "deny"}}
	rules_of(cluster.deny) == {"odd-etcd-count"} with input as rke_input(two, {}, rules)
	cluster.warn == set() with input as rke_input(two, {}, rules)
}

test_node_outside_networks if {
	rules := {"node-cidrs": {"params": {"cidrs": ["10.0.0.0/8"]}}}
	nodes := [node("10.0.0.1", all_roles), node("192.168.0.1", all_roles), node("host.example.com", all_roles)]
	d := cluster.deny with input as rke_input(nodes, {}, rules)
	{v.field | some v in d} == {"spec.rke.nodes[1].address", "spec.rke.nodes[2].address"}
}

test_disabled_rule_is_silent if {
	rules := {"unique-node-addresses": {"enabled": false}}
	nodes := [node("a.example.com", all_roles), node("A.example.com", ["worker"]), node("b.example.com", all_roles)]
	rules_of(cluster.deny) == {"unique-node-addresses"} with input as rke_input(nodes, {}, {})
	cluster.deny == set() with input as rke_input(nodes, {}, rules)
}

test_garbage_input_decides_nothing if {
	cluster.deny == set() with input as 5
	cluster.warn == set() with input as {"cluster": {"spec": []}}
}
