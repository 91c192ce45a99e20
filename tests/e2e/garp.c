/* Gratuitous ARP: "IP is at my MAC", broadcast on IFACE. Needs CAP_NET_RAW (AF_PACKET). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: garp IFACE IP\n"); return 64; }
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
    if (fd < 0) { perror("socket(AF_PACKET)"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
    unsigned char mac[6];
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror("SIOCGIFINDEX"); return 1; }
    struct in_addr ip;
    if (!inet_aton(argv[2], &ip)) { fprintf(stderr, "bad address\n"); return 64; }
    unsigned char frame[42];
    struct ether_header *eth = (struct ether_header *)frame;
    struct ether_arp *arp = (struct ether_arp *)(frame + sizeof *eth);
    memset(eth->ether_dhost, 0xff, 6);
    memcpy(eth->ether_shost, mac, 6);
    eth->ether_type = htons(ETHERTYPE_ARP);
    arp->arp_hrd = htons(ARPHRD_ETHER);
    arp->arp_pro = htons(ETHERTYPE_IP);
    arp->arp_hln = 6;
    arp->arp_pln = 4;
    arp->arp_op = htons(ARPOP_REPLY);
    memcpy(arp->arp_sha, mac, 6);
    memcpy(arp->arp_spa, &ip, 4);
    memcpy(arp->arp_tha, mac, 6); /* a gratuitous reply: target = sender */
    memcpy(arp->arp_tpa, &ip, 4);
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifr.ifr_ifindex;
    to.sll_halen = 6;
    memset(to.sll_addr, 0xff, 6);
    for (int i = 0; i < 10; i++) {
        if (sendto(fd, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); return 1; }
        usleep(300000);
    }
    return 0;
}
