// SPDX-License-Identifier: Apache-2.0
/* Entry point: hands argv to the command table in ctl.c. */
#include <string.h>

#include "cli/ctl.h"
#include "daemon/daemon.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "daemon") == 0)
		kb_daemon_exec_with_huge_pages(argv);
	return kb_ctl_main(argc, argv);
}
