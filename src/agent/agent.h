/* The agent process: "shivneri agent -c FILE -p NAME [--server HOST:PORT]". */
#ifndef SHIVNERI_AGENT_H
#define SHIVNERI_AGENT_H

int agent_main(int argc, char **argv);

#endif
