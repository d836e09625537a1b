// SPDX-License-Identifier: Apache-2.0
/* The schema of the Kubernetes kinds kbackend reads for Service backendRefs: Service, ServiceImport, EndpointSlice. */
#include <ctype.h>
#include <string.h>

#include "manifest_int.h"

/*
 * These objects come from the API server as often as from files, and newer
 * Kubernetes versions add fields: each table ends with F_REST, so a field
 * kbackend does not read is accepted, as a client that decodes leniently does.
 */

/* targetPort is an IntOrString: a number, or the name of a container port. */
static void target_port_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_svc_port *p = (struct kb_svc_port *)t;
	const char *s;

	if (mf_is_null(v))
		return;
	/* An unquoted number is the int form (a quoted "8080" is a port name, and an invalid one). */
	if (v->t == YN_SCALAR && !v->quoted && (isdigit((unsigned char)v->s[0]) || v->s[0] == '-' || v->s[0] == '+')) {
		if (mf_get_int(c, v, path, &p->target_port))
			p->has_target = true;
		return;
	}
	if (mf_get_str(c, v, path, &s)) {
		p->target_name = kb_strdup(&c->m->arena, s);
		p->has_target = true;
	}
}

static const struct field svc_port_fields[] = {
	F_STR("name", struct kb_svc_port, name),
	F_INTH("port", struct kb_svc_port, port, has_port),
	F_STR("protocol", struct kb_svc_port, protocol),
	F_FN("targetPort", target_port_fn),
	F_INTX("nodePort"),
	F_STRX("appProtocol"),
	F_REST,
	F_END,
};

static const struct seqspec svc_ports = SEQSPEC(struct kb_service, struct kb_svc_port, ports, nports,
						PATH_OF(struct kb_svc_port), svc_port_fields, NULL, NULL);

static const struct field service_spec[] = {
	F_STR("type", struct kb_service, type),
	F_STR("clusterIP", struct kb_service, cluster_ip),
	F_STRS("clusterIPs", struct kb_service, cluster_ips, ncluster_ips),
	F_STR("externalName", struct kb_service, external_name),
	F_SEQ("ports", &svc_ports),
	F_REST,
	F_END,
};

/* multicluster.x-k8s.io ServiceImport: spec.ips for the clusterset IPs, ports as a Service's (no targetPort). */
static const struct field import_port_fields[] = {
	F_STR("name", struct kb_svc_port, name),
	F_INTH("port", struct kb_svc_port, port, has_port),
	F_STR("protocol", struct kb_svc_port, protocol),
	F_STRX("appProtocol"),
	F_REST,
	F_END,
};

static const struct seqspec import_ports = SEQSPEC(struct kb_service, struct kb_svc_port, ports, nports,
						   PATH_OF(struct kb_svc_port), import_port_fields, NULL, NULL);

static const struct field import_spec[] = {
	F_STR("type", struct kb_service, type),
	F_STRS("ips", struct kb_service, cluster_ips, ncluster_ips),
	F_SEQ("ports", &import_ports),
	F_REST,
	F_END,
};

/* ---- EndpointSlice (discovery.k8s.io/v1) ------------------------------------------------ */

static const struct field slice_conditions[] = {
	F_TRI("ready", struct kb_slice_endpoint, ready),
	F_TRI("serving", struct kb_slice_endpoint, serving),
	F_TRI("terminating", struct kb_slice_endpoint, terminating),
	F_REST,
	F_END,
};

static const struct field slice_endpoint_fields[] = {
	F_STRS("addresses", struct kb_slice_endpoint, addresses, naddresses),
	F_SUB("conditions", slice_conditions),
	F_STRX("hostname"),
	F_STRX("nodeName"),
	F_STRX("zone"),
	F_ANY("targetRef"),
	F_ANY("hints"),
	F_REST,
	F_END,
};

static void slice_endpoint_init(struct ctx *c, char *e)
{
	struct kb_slice_endpoint *ep = (struct kb_slice_endpoint *)e;

	ep->ready = ep->serving = ep->terminating = -1;
}

static const struct seqspec slice_endpoints = SEQSPEC(struct kb_endpoint_slice, struct kb_slice_endpoint, endpoints,
						      nendpoints, PATH_OF(struct kb_slice_endpoint),
						      slice_endpoint_fields, slice_endpoint_init, NULL);

static const struct field slice_port_fields[] = {
	F_STR("name", struct kb_slice_port, name),
	F_INTH("port", struct kb_slice_port, port, has_port),
	F_STR("protocol", struct kb_slice_port, protocol),
	F_STRX("appProtocol"),
	F_REST,
	F_END,
};

static const struct seqspec slice_ports = SEQSPEC(struct kb_endpoint_slice, struct kb_slice_port, ports, nports,
						  PATH_OF(struct kb_slice_port), slice_port_fields, NULL, NULL);

/* ---- top level ---------------------------------------------------------------------------- */

#define TOP_COMMON F_SKIP("apiVersion"), F_SKIP("kind"), F_SKIP("metadata")

const struct field mf_top_service[] = { TOP_COMMON, F_SUB("spec", service_spec), F_ANY("status"), F_END };
const struct field mf_top_service_import[] = { TOP_COMMON, F_SUB("spec", import_spec), F_ANY("status"), F_END };
/* An EndpointSlice has no spec: its fields sit at the top. */
const struct field mf_top_endpoint_slice[] = {
	TOP_COMMON,
	F_STR("addressType", struct kb_endpoint_slice, address_type),
	F_SEQ("endpoints", &slice_endpoints),
	F_SEQ("ports", &slice_ports),
	F_REST,
	F_END,
};

void mf_slice_owner(struct kb_meta *obj)
{
	struct kb_endpoint_slice *s = (struct kb_endpoint_slice *)obj;

	/* A Service's own slices first: an MCS controller labels the imported ones only with its own key. */
	for (size_t i = 0; i < obj->nlabels; i++)
		if (strcmp(obj->labels[2 * i], KB_LABEL_SERVICE_NAME) == 0) {
			s->service = obj->labels[2 * i + 1];
			s->owner_kind = KB_KIND_SERVICE;
			return;
		}
	for (size_t i = 0; i < obj->nlabels; i++)
		if (strcmp(obj->labels[2 * i], KB_LABEL_MCS_SERVICE_NAME) == 0) {
			s->service = obj->labels[2 * i + 1];
			s->owner_kind = KB_KIND_SERVICE_IMPORT;
			return;
		}
}
