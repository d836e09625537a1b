// SPDX-License-Identifier: Apache-2.0
/* Entry point: hands argv to the command table in ctl.c. */
#include "cli/ctl.h"

int main(int argc, char **argv)
{
	return kb_ctl_main(argc, argv);
}
