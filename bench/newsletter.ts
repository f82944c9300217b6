// The campaign every benchmark sends: a plain weekly newsletter (header, three stories with
// an image and a button each, a sign-off), personalised where a marketer would.
const story = (n: number) => `
    <mj-section>
      <mj-column width="35%"><mj-image src="https://cdn.bench.example/story-${n}.jpg" alt="Story ${n}" /></mj-column>
      <mj-column width="65%">
        <mj-text font-size="18px" font-weight="bold">Story ${n}: what changed this week</mj-text>
        <mj-text>Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor incididunt ut labore et
          dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea
          commodo consequat. {% if subscriber.first_name %}{{ subscriber.first_name }}, this{% else %}This{% endif %} one is for you.</mj-text>
        <mj-button href="https://bench.example/stories/${n}?utm_campaign=weekly">Read story ${n}</mj-button>
      </mj-column>
    </mj-section>`;

export const NEWSLETTER = {
  subject: 'The weekly {{ list.name }} for {{ subscriber.first_name | default: "you" }}',
  mjml: `<mjml>
  <mj-head><mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /><mj-text font-size="15px" line-height="22px" color="#24292f" /></mj-attributes></mj-head>
  <mj-body background-color="#f6f8fa">
    <mj-section background-color="#0b5fff"><mj-column>
      <mj-text color="#ffffff" font-size="24px" font-weight="bold">{{ list.name }}</mj-text>
      <mj-text color="#ffffff">Hello {{ subscriber.first_name | default: "there" }}, here is what happened this week.</mj-text>
    </mj-column></mj-section>${[1, 2, 3].map(story).join('')}
    <mj-section><mj-column><mj-text>Until next week,<br />the editors</mj-text></mj-column></mj-section>
  </mj-body>
</mjml>`,
};
