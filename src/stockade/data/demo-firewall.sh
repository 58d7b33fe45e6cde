#!/bin/sh
# A mail and web server firewall in the style of the tutorials admins copy,
# with the mistakes those tutorials carry. `stockade demo` imports it.
SERVER_IP="203.0.113.10"
ADMINS="198.51.100.7 198.51.100.8"

iptables -F
iptables -X
iptables -P INPUT DROP
iptables -P OUTPUT ACCEPT
iptables -P FORWARD DROP

iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT

# drop scans and malformed packets
iptables -A INPUT -p tcp --tcp-flags ALL NONE -j DROP
iptables -A INPUT -p tcp --tcp-flags ALL ALL -j DROP
iptables -A INPUT -p tcp ! --syn -m state --state NEW -j DROP
iptables -A INPUT -f -j DROP

# SYN flood protection, as the tutorials write it
iptables -N syn_flood
iptables -A INPUT -p tcp --syn -j syn_flood
iptables -A syn_flood -m limit --limit 1/s --limit-burst 3 -j RETURN
iptables -A syn_flood -j DROP

# mail and web
iptables -A INPUT -p tcp -m multiport --dports 25,80,443 -j ACCEPT
iptables -A INPUT -p tcp –dport 993 -j ACCEPT
iptables -A INPUT-p tcp --dport 995 -j ACCEPT

# ssh for the admins only
for ip in $ADMINS
do
iptables -A INPUT -p tcp -s $ip -d $SERVER_IP --dport 22 -j ACCEPT
done
iptables -A INPUT -p tcp -s x.x.x.x --dport 22 -j ACCEPT

# ping, limited
iptables -A INPUT -p icmp --icmp-type echo-request -m limit --limit 1/s -j ACCEPT
iptables -A INPUT --dport 161 -j ACCEPT
iptables -A INPUT -j LOG --log-prefix "dropped: "

iptables-save > /etc/iptables/rules.v4
