// SPDX-License-Identifier: Apache-2.0
/* The kbackend CLI (placeholder). */
#include "ctl.h"

int kb_ctl_main(int argc, char **argv)
{
	return 2;
}
