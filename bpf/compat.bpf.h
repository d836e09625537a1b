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
 * Refuse the syscall with errno err: "return 0" alone reads as EPERM.
 * bpf_set_retval (5.18) is required (user/daemon/kernel_features.c): an EPERM fallback for
 * older kernels was dropped, because no kernel here could test it.
 */
static __always_inline int kb_refuse(int err)
{
	bpf_set_retval(-err);
	return 0;
}

#endif /* KB_COMPAT_BPF_H */
