/* The server process: "shivneri serve [-c FILE]". */
#ifndef SHIVNERI_SERVE_H
#define SHIVNERI_SERVE_H

int serve_main(int argc, char **argv);

#endif
