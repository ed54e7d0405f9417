# A small policy for the remote client's tests (tests/unit/test_policy_remote.c): decisions computed
# from the input, in every shape a policy service may answer them.
package cmtest

# An object violation with rule, msg and field.
deny contains {
	"rule": "name-forbidden",
	"msg": sprintf("the cluster name %q is forbidden", [input.cluster.name]),
	"field": "cluster.name",
} if {
	input.cluster.name == "forbidden"
}

# "message" instead of "msg", one violation per node.
deny contains {
	"rule": "node-port",
	"message": sprintf("node %d: port %d is not allowed", [i, node.port]),
	"field": sprintf("spec.nodes[%d].port", [i]),
} if {
	some i, node in input.cluster.spec.nodes
	node.port < 1024
}

# A bare message: the client files it under the unnamed rule.
warn contains "the cluster has no labels" if {
	count(object.get(input.cluster, "labels", {})) == 0
}

# A helper rule: other members of the result are not part of the decision.
node_count := count(object.get(input.cluster.spec, "nodes", []))
