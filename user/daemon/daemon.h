/* SPDX-License-Identifier: Apache-2.0 */
/* kbackend daemon: the single writer of the maps, serving the control socket. */
#ifndef KB_DAEMON_H
#define KB_DAEMON_H

/* `kbackend daemon ...`: runs until SIGTERM/SIGINT or an unload request. Exit code 0/1/2. */
int kb_daemon_main(int argc, char **argv);

#endif /* KB_DAEMON_H */
