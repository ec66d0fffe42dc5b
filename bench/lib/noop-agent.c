/* noop-agent: the throughput benchmark's agent. Does no work; reports the job done
 * over the Scrum4Me HTTP endpoint named in its --mcp-config file (one stateless
 * tools/call POST, as the stand-in's Streamable HTTP allows), then exits 0.
 *
 * Job id from $SCRUM4ME_JOB_ID; the URL (http://127.0.0.1:PORT/...), the bearer token
 * and the instance header from the MCP config fleetd wrote. Exits 3 when the server
 * refused the report, 2 on a usage problem. Loopback only: the URL host must be
 * 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The JSON string value after "key": in text, unescaping \" \\ \/ only. */
static int json_string(const char *text, const char *key, char *out, size_t cap) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(text, pattern);
    if (!p) return -1;
    p += strlen(pattern);
    while (*p == ' ') p++;
    if (*p != '"') return -1;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = 0;
    return 0;
}

int main(int argc, char **argv) {
    const char *config_path = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--mcp-config") == 0) config_path = argv[i + 1];
    const char *job = getenv("SCRUM4ME_JOB_ID");
    if (!config_path || !job) { fprintf(stderr, "noop-agent: no --mcp-config or SCRUM4ME_JOB_ID\n"); return 2; }
    FILE *f = fopen(config_path, "r");
    if (!f) { perror(config_path); return 2; }
    static char config[65536];
    size_t len = fread(config, 1, sizeof config - 1, f);
    config[len] = 0;
    fclose(f);

    char url[512], auth[512], instance[256] = "";
    if (json_string(config, "url", url, sizeof url) || json_string(config, "Authorization", auth, sizeof auth)) {
        fprintf(stderr, "noop-agent: no http url or Authorization in the MCP config\n");
        return 2;
    }
    json_string(config, "X-Scrum4Me-Worker-Instance", instance, sizeof instance);
    int port = 0;
    char path[256] = "/";
    if (sscanf(url, "http://127.0.0.1:%d%255s", &port, path) < 1 || port <= 0) {
        fprintf(stderr, "noop-agent: %s is not http://127.0.0.1:PORT/...\n", url);
        return 2;
    }

    char body[1024];
    int blen = snprintf(body, sizeof body,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"update_job_status\","
        "\"arguments\":{\"job_id\":\"%s\",\"status\":\"done\",\"summary\":\"no-op agent\"}}}", job);
    static char request[4096];
    int rlen = snprintf(request, sizeof request,
        "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nX-Scrum4Me-Worker-Instance: %s\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        "MCP-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
        path, port, auth, instance, blen, body);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("noop-agent: connect"); return 3; }
    for (int off = 0; off < rlen;) {
        ssize_t w = write(fd, request + off, (size_t)(rlen - off));
        if (w <= 0) { perror("noop-agent: write"); return 3; }
        off += (int)w;
    }
    static char answer[65536];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, answer + got, sizeof answer - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        if (got >= sizeof answer - 1) break;
    }
    answer[got] = 0;
    close(fd);
    if (strncmp(answer, "HTTP/1.1 200", 12) != 0 || strstr(answer, "\"isError\":true") || strstr(answer, "\"isError\": true")) {
        fprintf(stderr, "noop-agent: report refused: %.400s\n", answer);
        return 3;
    }
    printf("{\"type\":\"result\",\"subtype\":\"success\",\"job_id\":\"%s\"}\n", job);
    return 0;
}
