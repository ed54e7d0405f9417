# SPDX-License-Identifier: Apache-2.0
#
# The built-in rules of clustermgmt (docs/policy.md) in Rego: the same decisions as the service's
# built-in mode (src/policy/builtin.c) over the same policy input, with the same messages. A member of
# the wrong type counts as absent; a parameter of the wrong type falls back to its default.
#
# data.cratekube.cluster gives the decision ({"deny": [...], "warn": [...]}); this package holds the
# rules, their defaults and the helpers.
package cratekube.rules

# The rules' defaults, in the order of the catalogue.
defaults := {
	"etcd-snapshots": {"enabled": true, "effect": "deny", "params": {"minRetentionHours": 0}},
	"production-etcd-quorum": {
		"enabled": true, "effect": "deny",
		"params": {"environmentLabels": {"tier": "production"}, "minEtcdNodes": 3},
	},
	"supported-version": {"enabled": true, "effect": "deny", "params": {"minimum": ""}},
	"node-cidrs": {"enabled": true, "effect": "deny", "params": {"cidrs": []}},
	"unique-node-addresses": {"enabled": true, "effect": "deny", "params": {}},
	"odd-etcd-count": {"enabled": true, "effect": "warn", "params": {}},
	"required-labels": {"enabled": true, "effect": "deny", "params": {"keys": []}},
	"max-nodes": {"enabled": true, "effect": "deny", "params": {"max": 100}},
	"allowed-engines": {"enabled": true, "effect": "deny", "params": {"engines": []}},
}

# rke's own default when spec.rke.etcdSnapshots.retentionHours is not given.
rke_default_retention_hours := 72

# --- Settings ---

rule_settings(id) := s if {
	s := input.settings.rules[id]
	is_object(s)
} else := {}

is_enabled(id) := b if {
	b := rule_settings(id).enabled
	is_boolean(b)
} else := defaults[id].enabled

effect(id) := e if {
	e := rule_settings(id).effect
	e in {"deny", "warn"}
} else := defaults[id].effect

raw_param(id, name) := rule_settings(id).params[name]

# An integral number from 0 to 1e9.
count_value(v) := v if {
	is_number(v)
	v == floor(v)
	v >= 0
	v <= 1000000000
}

param_count(id, name) := n if {
	n := count_value(raw_param(id, name))
} else := defaults[id].params[name]

param_string(id, name) := s if {
	s := raw_param(id, name)
	is_string(s)
} else := defaults[id].params[name]

param_list(id, name) := a if {
	a := raw_param(id, name)
	is_array(a)
	every x in a {
		is_string(x)
	}
} else := defaults[id].params[name]

param_labels(id, name) := o if {
	o := raw_param(id, name)
	is_object(o)
	every x in o {
		is_string(x)
	}
} else := defaults[id].params[name]

# --- Facts about the input ---

cluster := input.cluster if {
	is_object(input.cluster)
} else := {}

spec := cluster.spec if {
	is_object(cluster.spec)
} else := {}

cluster_labels := cluster.labels if {
	is_object(cluster.labels)
} else := {}

env_labels := input.environment.labels if {
	is_object(input.environment.labels)
} else := {}

engine := spec.engine if is_string(spec.engine)

engine_name := n if {
	n := input.engine.name
	is_string(n)
} else := n if {
	n := engine
} else := "unknown"

rke := spec.rke if {
	is_object(spec.rke)
} else := {}

nodes := rke.nodes if {
	is_array(rke.nodes)
} else := []

snapshots := rke.etcdSnapshots if {
	is_object(rke.etcdSnapshots)
} else := {}

spec_local := spec.local if {
	is_object(spec.local)
} else := {}

k8s_version := v if {
	v := spec.kubernetesVersion
	is_string(v)
} else := ""

node_address(n) := n.address if {
	is_object(n)
	is_string(n.address)
}

has_etcd(n) if {
	is_object(n)
	is_array(n.roles)
	some r in n.roles
	r == "etcd"
}

etcd_count := count([i | some i, n in nodes; has_etcd(n)])

# "a, b, c", at most 32 entries, then " and N more".
list_text(xs) := concat(", ", xs) if {
	count(xs) <= 32
} else := sprintf("%s and %s more", [concat(", ", array.slice(xs, 0, 32)), format_int(count(xs) - 32, 10)])

# ASCII-only case folding (lower() would fold other letters too).
ascii_lower(s) := strings.replace_n(
	{
		"A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "F": "f", "G": "g", "H": "h", "I": "i",
		"J": "j", "K": "k", "L": "l", "M": "m", "N": "n", "O": "o", "P": "p", "Q": "q", "R": "r",
		"S": "s", "T": "t", "U": "u", "V": "v", "W": "w", "X": "x", "Y": "y", "Z": "z",
	},
	s,
)

# "v1.32.7-rancher1-1" -> [1, 32, 7]; undefined for anything else.
version_parts(s) := [to_number(m[1]), to_number(m[2]), to_number(m[3])] if {
	is_string(s)
	m := regex.find_all_string_submatch_n(`^v([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(?:[-+](?s:.*))?$`, s, 1)[0]
}

# An IPv4 or IPv6 address without a zone (what net.ParseIP takes).
is_ip(a) if net.cidr_is_valid(concat("", [a, "/0"]))

inside_any(a, cidrs) if {
	is_ip(a)
	some c in cidrs
	net.cidr_contains(c, a)
}

violation(id, field, message) := {"rule": id, "field": field, "message": message}

node_field(i) := sprintf("spec.rke.nodes[%s].address", [format_int(i, 10)])

# --- etcd-snapshots ---

violations contains violation("etcd-snapshots", "spec.rke.etcdSnapshots.enabled", msg) if {
	is_enabled("etcd-snapshots")
	engine == "rke"
	snapshots.enabled == false
	msg := "etcd snapshots must stay enabled: without them a failed etcd cannot be restored; set spec.rke.etcdSnapshots.enabled to true or leave it out"
}

violations contains violation("etcd-snapshots", "spec.rke.etcdSnapshots.retentionHours", msg) if {
	is_enabled("etcd-snapshots")
	engine == "rke"
	not snapshots.enabled == false
	least := param_count("etcd-snapshots", "minRetentionHours")
	least > 0
	not "retentionHours" in object.keys(snapshots)
	rke_default_retention_hours < least
	msg := sprintf(
		"etcd snapshots must be kept for at least %s hours in this environment; set spec.rke.etcdSnapshots.retentionHours to %s or more (the default is %s)",
		[format_int(least, 10), format_int(least, 10), format_int(rke_default_retention_hours, 10)],
	)
}

violations contains violation("etcd-snapshots", "spec.rke.etcdSnapshots.retentionHours", msg) if {
	is_enabled("etcd-snapshots")
	engine == "rke"
	not snapshots.enabled == false
	least := param_count("etcd-snapshots", "minRetentionHours")
	least > 0
	hours := count_value(snapshots.retentionHours)
	hours < least
	msg := sprintf(
		"etcd snapshots must be kept for at least %s hours in this environment; set spec.rke.etcdSnapshots.retentionHours to %s or more (it is %s)",
		[format_int(least, 10), format_int(least, 10), format_int(hours, 10)],
	)
}

# --- production-etcd-quorum ---

production(want) if {
	every k, v in want {
		env_labels[k] == v
	}
}

subject(want) := "clusters in this environment" if {
	count(want) == 0
} else := concat("", ["clusters in environments labelled ", concat(",", sort([sprintf("%s=%s", [k, v]) | some k, v in want]))])

violations contains violation("production-etcd-quorum", "spec.rke.nodes", msg) if {
	is_enabled("production-etcd-quorum")
	engine == "rke"
	want := param_labels("production-etcd-quorum", "environmentLabels")
	production(want)
	least := param_count("production-etcd-quorum", "minEtcdNodes")
	etcd_count < least
	msg := sprintf(
		"%s need at least %s etcd nodes so that etcd keeps its quorum when a node fails; this cluster has %s: give more nodes the etcd role",
		[subject(want), format_int(least, 10), format_int(etcd_count, 10)],
	)
}

violations contains violation("production-etcd-quorum", "spec.engine", msg) if {
	is_enabled("production-etcd-quorum")
	engine == "local"
	want := param_labels("production-etcd-quorum", "environmentLabels")
	production(want)
	msg := sprintf(
		"%s must use engine rke: local clusters run on the service's own machine and are meant for development",
		[subject(want)],
	)
}

# --- supported-version ---

string_versions := [v | some v in input.engine.versions; is_string(v)]

violations contains violation("supported-version", "spec.kubernetesVersion", msg) if {
	is_enabled("supported-version")
	k8s_version != ""
	is_array(input.engine.versions)
	not k8s_version in input.engine.versions
	count(string_versions) == 0
	msg := sprintf(
		"Kubernetes version %s is not supported by engine %s, which lists no versions; leave kubernetesVersion empty for the engine's default",
		[k8s_version, engine_name],
	)
}

violations contains violation("supported-version", "spec.kubernetesVersion", msg) if {
	is_enabled("supported-version")
	k8s_version != ""
	is_array(input.engine.versions)
	not k8s_version in input.engine.versions
	count(string_versions) > 0
	msg := sprintf(
		"Kubernetes version %s is not supported by engine %s; use one of %s, or leave kubernetesVersion empty for the engine's default",
		[k8s_version, engine_name, list_text(string_versions)],
	)
}

violations contains violation("supported-version", "spec.kubernetesVersion", msg) if {
	is_enabled("supported-version")
	minimum := param_string("supported-version", "minimum")
	version_parts(minimum)
	k8s_version != ""
	not version_parts(k8s_version)
	msg := sprintf(
		"Kubernetes version %s cannot be compared with %s, the oldest this environment allows; use a version like v1.32.7-rancher1-1",
		[k8s_version, minimum],
	)
}

violations contains violation("supported-version", "spec.kubernetesVersion", msg) if {
	is_enabled("supported-version")
	minimum := param_string("supported-version", "minimum")
	oldest := version_parts(minimum)
	version_parts(k8s_version) < oldest
	msg := sprintf(
		"Kubernetes version %s is older than %s, the oldest this environment allows; choose %s or newer",
		[k8s_version, minimum, minimum],
	)
}

violations contains violation("supported-version", "spec.kubernetesVersion", msg) if {
	is_enabled("supported-version")
	minimum := param_string("supported-version", "minimum")
	oldest := version_parts(minimum)
	k8s_version == ""
	default_version := input.engine["default"]
	version_parts(default_version) < oldest
	msg := sprintf(
		"the default Kubernetes version of engine %s (%s) is older than %s, the oldest this environment allows; set kubernetesVersion to %s or newer",
		[engine_name, default_version, minimum, minimum],
	)
}

# --- node-cidrs ---

violations contains violation("node-cidrs", node_field(i), msg) if {
	is_enabled("node-cidrs")
	engine == "rke"
	cidrs := param_list("node-cidrs", "cidrs")
	count(cidrs) > 0
	some i, n in nodes
	a := node_address(n)
	not inside_any(a, cidrs)
	msg := sprintf(
		"node address %s must be an IP address within %s, the networks this environment allows",
		[a, list_text(cidrs)],
	)
}

# --- unique-node-addresses ---

violations contains violation("unique-node-addresses", node_field(i), msg) if {
	is_enabled("unique-node-addresses")
	engine == "rke"
	some i, n in nodes
	a := node_address(n)
	lowered := ascii_lower(a)
	earlier := [j | some j, m in nodes; j < i; ascii_lower(node_address(m)) == lowered]
	count(earlier) > 0
	msg := sprintf(
		"node address %s is also the address of spec.rke.nodes[%s]; each machine can be a node of a cluster once",
		[a, format_int(min(earlier), 10)],
	)
}

# --- odd-etcd-count ---

violations contains violation("odd-etcd-count", "spec.rke.nodes", msg) if {
	is_enabled("odd-etcd-count")
	engine == "rke"
	etcd_count >= 2
	etcd_count % 2 == 0
	msg := sprintf(
		"%s etcd nodes tolerate no more failures than %s would: use an odd number of etcd nodes, like 3 or 5",
		[format_int(etcd_count, 10), format_int(etcd_count - 1, 10)],
	)
}

# --- required-labels ---

violations contains violation("required-labels", concat("", ["labels.", key]), msg) if {
	is_enabled("required-labels")
	some key in param_list("required-labels", "keys")
	not key in object.keys(cluster_labels)
	msg := sprintf("this environment requires the label %s on every cluster; add it to the cluster's labels", [key])
}

# --- max-nodes ---

local_nodes := n if {
	n := count_value(spec_local.nodes)
} else := 1

node_total := [count(nodes), "spec.rke.nodes"] if engine == "rke"

node_total := [local_nodes, "spec.local.nodes"] if engine == "local"

violations contains violation("max-nodes", node_total[1], msg) if {
	is_enabled("max-nodes")
	limit := param_count("max-nodes", "max")
	node_total[0] > limit
	msg := sprintf(
		"this cluster has %s nodes; this environment allows at most %s",
		[format_int(node_total[0], 10), format_int(limit, 10)],
	)
}

# --- allowed-engines ---

violations contains violation("allowed-engines", "spec.engine", msg) if {
	is_enabled("allowed-engines")
	name := engine
	engines := param_list("allowed-engines", "engines")
	count(engines) > 0
	not name in engines
	msg := sprintf(
		"engine %s is not allowed in this environment; the allowed engines are %s",
		[name, list_text(engines)],
	)
}
