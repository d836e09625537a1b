/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel-version differences and the UAPI constants that vmlinux.h does not carry. */
#ifndef KB_COMPAT_BPF_H
#define KB_COMPAT_BPF_H

#include <bpf/bpf_core_read.h>

/* vmlinux.h has types only; these are stable UAPI values. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define EAFNOSUPPORT 97
#define EADDRNOTAVAIL 99
#define ECONNREFUSED 111

/*
 * Refuse the syscall with errno err. bpf_set_retval (5.18+) makes the errno
 * meaningful; older kernels only know "return 0", which the caller sees as
 * EPERM. The CO-RE check turns the branch into a constant, so the verifier
 * of an old kernel never sees the unknown helper.
 */
static __always_inline int kb_refuse(int err)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
		bpf_set_retval(-err);
	return 0;
}

#endif /* KB_COMPAT_BPF_H */
