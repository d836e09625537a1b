/* SPDX-License-Identifier: Apache-2.0 */
/* The kbackend CLI: the command table, argument parsing and output. */
#ifndef KB_CTL_H
#define KB_CTL_H

/* Exit codes: 0 ok, 1 failed, 2 usage. */
int kb_ctl_main(int argc, char **argv);

#endif /* KB_CTL_H */
