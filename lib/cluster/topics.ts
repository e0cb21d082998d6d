/**
 * Which sockets hold which topic, on this instance: the index `publish` reads. Each socket keeps
 * its own list too (to answer `subscribe` and to leave every topic when it closes).
 */
export class TopicIndex<Member> {
  private readonly byTopic = new Map<string, Set<Member>>()
  /** (socket, topic) pairs held. */
  size = 0

  add (topic: string, member: Member): void {
    let members = this.byTopic.get(topic)
    if (members === undefined) {
      members = new Set()
      this.byTopic.set(topic, members)
    }
    const before = members.size
    members.add(member)
    this.size += members.size - before
  }

  delete (topic: string, member: Member): void {
    const members = this.byTopic.get(topic)
    if (members === undefined || !members.delete(member)) return
    this.size--
    if (members.size === 0) this.byTopic.delete(topic)
  }

  /** The members holding a topic (do not change it while iterating). */
  membersOf (topic: string): ReadonlySet<Member> | undefined {
    return this.byTopic.get(topic)
  }
}
