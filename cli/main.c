/* skiff: the command-line client. Everything is in the skiffcli library
 * (cli.h), so that the unit tests can drive it. */
#include "cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
