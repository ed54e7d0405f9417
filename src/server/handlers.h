/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

struct cm_req;

void cm_handle_healthz(struct cm_req *req);
void cm_handle_readyz(struct cm_req *req);
void cm_handle_metrics(struct cm_req *req);
void cm_handle_openapi(struct cm_req *req);
void cm_handle_env_create(struct cm_req *req);
void cm_handle_env_list(struct cm_req *req);
void cm_handle_env_get(struct cm_req *req);
void cm_handle_env_delete(struct cm_req *req);
void cm_handle_cluster_create(struct cm_req *req);
void cm_handle_cluster_list(struct cm_req *req);
void cm_handle_cluster_get(struct cm_req *req);
void cm_handle_cluster_update(struct cm_req *req);
void cm_handle_cluster_delete(struct cm_req *req);
void cm_handle_cluster_kubeconfig(struct cm_req *req);
void cm_handle_cluster_kubeconfig_customer(struct cm_req *req);
void cm_handle_cluster_operations(struct cm_req *req);
void cm_handle_cluster_snapshot(struct cm_req *req);
void cm_handle_cluster_snapshots(struct cm_req *req);
void cm_handle_cluster_restore(struct cm_req *req);
void cm_handle_cluster_rotate_certs(struct cm_req *req);
void cm_handle_cluster_state_list(struct cm_req *req);
void cm_handle_cluster_state_get(struct cm_req *req);
void cm_handle_op_get(struct cm_req *req);
void cm_handle_op_log(struct cm_req *req);
void cm_handle_op_cancel(struct cm_req *req);
void cm_handle_sshkey_create(struct cm_req *req);
void cm_handle_sshkey_list(struct cm_req *req);
void cm_handle_sshkey_get(struct cm_req *req);
void cm_handle_sshkey_delete(struct cm_req *req);
void cm_handle_secret_create(struct cm_req *req);
void cm_handle_secret_update(struct cm_req *req);
void cm_handle_secret_list(struct cm_req *req);
void cm_handle_secret_get(struct cm_req *req);
void cm_handle_secret_delete(struct cm_req *req);
void cm_handle_policy_get(struct cm_req *req);
void cm_handle_policy_put(struct cm_req *req);
void cm_handle_policy_check(struct cm_req *req);
void cm_handle_engine_versions(struct cm_req *req);
