/* unlock: `skiff-controller unlock`, which gives a controller started with
 * --autolock its unlock key (read from standard input, asked for without
 * echo on a terminal) over the admin connection, as `docker swarm unlock`. */
#ifndef SKIFF_UNLOCK_H
#define SKIFF_UNLOCK_H

/* argv[0] is "unlock". Returns the exit status. */
int unlock_main(int argc, char **argv);

#endif
